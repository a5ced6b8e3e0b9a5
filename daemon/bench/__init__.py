"""Benchmarks: accuracy against simulated truth, time per stage and memory, printed as JSON."""
