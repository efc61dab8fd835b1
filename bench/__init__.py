"""Benchmarks of the SFU (see docs/benchmarks.md)."""
