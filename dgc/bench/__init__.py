"""Benchmarks: each module measures one thing, says in its docstring how it is run and what it writes,
and holds the code that renders its result. The scripts in benchmarks/ are thin entry points over
these modules (`dgc bench` is speed.py); registry.py lists the benchmarks of docs/speed.md's
section, which `dgc readme` renders from their files under reports/.
"""
