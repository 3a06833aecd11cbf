"""The ``linsam`` command line.

Subcommands live in their own modules; each exposes ``register(subparsers)`` which adds
one or more sub-parsers whose ``func`` attribute is called with the parsed namespace and
returns an exit status. Modules are imported lazily so ``linsam --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import linsam

# Modules providing subcommands (each has ``register(subparsers)``).
SUBCOMMAND_MODULES = (
    "linsam.cli.demo",
    "linsam.cli.derive",
    "linsam.cli.simulate",
    "linsam.cli.reproduce",
    "linsam._src.cli_cifar",
    "linsam.cli.bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linsam",
        description="Theory-verification toolkit for 'Why is SAM Robust to Label Noise?' "
        "(Baek, Kolter, Raghunathan, ICLR 2024).",
    )
    parser.add_argument("--version", action="version", version=f"linsam {linsam.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:  # a subcommand not built yet: skip only that module
            if err.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
