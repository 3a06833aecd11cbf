"""``linsam bench``: the performance benchmark (same as ``python -m bench``)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    import sys

    from linsam.cli import out_file

    if args.out != "-":
        try:
            out_file(args.out)  # before minutes of measurements
        except ValueError as err:
            print(f"linsam bench: error: {err}", file=sys.stderr)
            return 2
    from bench import benchmark  # imported lazily: keeps ``linsam --help`` fast

    return benchmark.main_from_args(args)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure sweep speed against this machine's GEMM and bandwidth limits; writes BENCHMARKS.md",
        description="Performance benchmark of the one engine (linsam.simulate): machine limits (GEMM, copy "
        "bandwidth), the default workload against a per-run NumPy loop, the rho sweep against the GEMM roofline, "
        "closed form vs autodiff, and peak memory. See docs/performance.md.",
    )
    p.add_argument("--tiny", action="store_true", help="tiny sizes (seconds; for tests: numbers are meaningless)")
    p.add_argument("--out", default="BENCHMARKS.md", help="report path (default BENCHMARKS.md; '-' = do not write)")
    p.add_argument("--quiet", action="store_true", help="do not print the report")
    p.set_defaults(func=run)
