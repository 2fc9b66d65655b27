"""Benchmarks: ``python -m bench`` (jitted, ratios against baselines measured in the same run)."""
