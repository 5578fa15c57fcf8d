"""Commands outside the pipeline: train-all, use-profile, paper-ref, readme.
"""
