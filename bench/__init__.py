"""Benchmarks; each script runs on its own (see bench/RESULTS.md)."""
