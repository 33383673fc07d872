import os
import sys

# `pytest benchmarks/` from the repository root: make `benchmarks.report` importable
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
