"""Benchmarks against the dev org: ratios measured side by side in one run (`python3.11 scripts/dev.py bench`).

Not part of the test suite and asserting nothing about time: each target prints its figure, the reference it is
compared with, the ratio and a verdict, and `docs/benchmarks.md` records the latest table, chart and command.
"""
