"""`dgc train-all`'s jobs on submitit: what a job runs (job.py), what launchers share (jobs.py), and the
launchers of one host (local.py) and of a Slurm cluster (slurm.py)."""
