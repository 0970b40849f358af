"""Benchmarks of the monthly job against naive baselines (see BENCHMARKS.md)."""
