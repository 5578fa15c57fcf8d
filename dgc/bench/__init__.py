"""Benchmarks in the package: `dgc bench` (speed.py) and the speed section of docs/speed.md
(registry.py renders each benchmark's result for `dgc readme`). The other benchmarks are scripts in
benchmarks/, the one-off studies scripts in studies/; both import dgc and are not part of it.
"""
