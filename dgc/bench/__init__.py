"""Benchmarks: each measures one thing and writes its JSON and markdown under reports/; the
scripts in benchmarks/ are thin entry points over these modules.
"""
