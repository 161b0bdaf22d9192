"""Benchmarks of the server; see bench/run.py."""
