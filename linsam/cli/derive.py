"""``linsam derive``: list, print, check and render the SymPy derivations D1..D7.

    linsam derive                 list the results
    linsam derive D3              print one derivation (Markdown with LaTeX)
    linsam derive --check         run every proof; one line per result with its timing;
                                  exit 0 only if all hold (names restrict the run)
    linsam derive --render DIR    write the documents (one per result + index.md), atomically
"""

from __future__ import annotations

import argparse
import sys
import time


def _list(derivations) -> int:
    print("linsam derivations (`linsam derive NAME` prints one, `--check` proves all):")
    for mod in derivations.modules():
        print(f"  {mod.NAME:<3} {mod.SLUG:<18} {mod.TITLE}")
    return 0


def _check(derivations, which: list[str] | None) -> int:
    t0 = time.perf_counter()
    ok = True
    mods = derivations.modules() if not which else [derivations.get(n) for n in which]
    for mod in mods:
        res = mod.check()
        n_ok = sum(c.holds for c in res.claims)
        status = "PASS" if res.holds else "FAIL"
        print(f"{res.name:<3} {status}  {n_ok}/{len(res.claims)} claims  {res.seconds:6.2f} s  {res.title}", flush=True)
        for claim in res.failed:
            print(f"      not proved: {claim.statement}")
            if claim.error:
                print(f"      error: {claim.error}")
        ok &= res.holds
    total = time.perf_counter() - t0
    print(f"{'all results hold' if ok else 'SOME RESULTS DO NOT HOLD'}  ({len(mods)} results, {total:.2f} s)")
    return 0 if ok else 1


def run(args: argparse.Namespace) -> int:
    from linsam.cli import out_dir

    try:
        if args.render is not None:
            out_dir(args.render, "--render")  # before SymPy is imported and anything is rendered
    except ValueError as err:
        print(f"linsam derive: error: {err}", file=sys.stderr)
        return 2
    import derivations  # lazily: SymPy import is slow

    try:
        if args.render is not None:
            paths = derivations.render_all(args.render)
            for p in paths:
                print(f"wrote {p}")
            if not args.check:
                return 0
        if args.check:
            return _check(derivations, args.names)
        if not args.names:
            return _list(derivations)
        for name in args.names:
            sys.stdout.write(derivations.get(name).render())
        return 0
    except ValueError as err:  # unknown name
        print(f"linsam derive: {err}", file=sys.stderr)
        return 2


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "derive",
        help="SymPy derivations D1..D7: list, print, --check the proofs, --render the documents",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="result names (D1..D7, or slugs)")
    p.add_argument("--check", action="store_true", help="run the proofs; exit 0 only if all hold")
    p.add_argument("--render", metavar="DIR", default=None, help="write the Markdown documents into DIR")
    p.set_defaults(func=run)
