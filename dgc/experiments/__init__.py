"""Studies run as queued `dvc exp` experiments: the ablation grid's points and the matching of
experiments to them (grid), queueing and reading `dvc exp` (queue), reports/ablations.html's
tables and figures (page), and the training-budget study with its page (budget).
"""
