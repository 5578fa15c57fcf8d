"""Commands outside the pipeline: train-all, export, paper-ref, readme (use-profile is in dgc/cli.py)."""
