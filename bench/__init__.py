"""``python -m bench``: linsam's performance benchmark (code in :mod:`bench.benchmark`).

Writes BENCHMARKS.md; ``--tiny`` runs in seconds (for tests); see docs/performance.md.
"""

from bench.benchmark import BenchConfig, main, run_bench  # noqa: F401

__all__ = ["BenchConfig", "main", "run_bench"]
