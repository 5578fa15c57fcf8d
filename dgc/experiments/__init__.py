"""Studies run as queued `dvc exp` experiments: the ablation grid and the matching of experiments (grid), `dvc exp`
and the study pages' record and rendering (queue), what both pages say (about) and reports/ablations.html (page);
the training-budget study is studies/budget.py, over these."""
