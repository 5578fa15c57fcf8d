"""Benchmarks in the package: `dgc bench` (speed.py) and the rendering of every benchmark's result for
docs/speed.md (registry.py, for `dgc readme`); the other benchmarks are scripts in benchmarks/ and studies/."""
