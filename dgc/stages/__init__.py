"""The pipeline's stages: one module per dvc.yaml stage (data, train, evaluate, architecture,
compare, plots, report), each a pure function that bin/dgc's subcommand of the same name calls.
A stage module imports no other stage module (tests/test_layout.py): what two stages share lives in
dgc/runtime, dgc/measure or dgc/data.
"""
