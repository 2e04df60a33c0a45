"""Benchmarks run against a real `parloir serve` subprocess (`parloir bench ...`)."""
