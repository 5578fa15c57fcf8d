"""Studies run as queued `dvc exp` experiments: the ablation grid and the matching of experiments (grid), `dvc exp`
(queue), what both pages say (about), reports/ablations.html (page) and the training-budget study (budget)."""
