"""fastmlp's benchmarks: ``python -m benchmarks.report`` and ``pytest benchmarks/ --benchmark-only``."""
