"""`dgc train-all`'s jobs on submitit: what a job runs (job.py), what every launcher shares (jobs.py:
a submitted job's record, its state and how it ended), and the two launchers, one host (local.py) and
a Slurm cluster (slurm.py).
"""
