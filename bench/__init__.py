"""Benchmarks: run as python -m bench.<name>; each prints a table with ratios against a baseline."""
