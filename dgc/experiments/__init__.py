"""Studies run as queued `dvc exp` experiments: the ablation grid and the training-budget
study, their queueing and their HTML pages.
"""
