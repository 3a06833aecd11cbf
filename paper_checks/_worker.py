"""Second process of ``linsam reproduce``: the SymPy proofs and C2's float64 comparison.

Run as ``python -m paper_checks._worker '<json settings>'``; prints one JSON line
``{"derivations": [...], "derivations_s": .., "c2": {...}, "c2_s": ..}`` on stdout.
(:class:`reproduction.context.Context` starts it so that this CPU-bound, JAX-free-ish work
overlaps the sweeps' compilation in the main process.)
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    settings = json.loads(argv[0]) if argv else {}
    from paper_checks import c2_closed_vs_autodiff as c2
    from reproduction.context import run_derivations

    t0 = time.perf_counter()
    c2_out = c2.compare(settings.get("c2", {}))
    t1 = time.perf_counter()
    ders = run_derivations(settings.get("derivations"))
    t2 = time.perf_counter()
    print(json.dumps({"derivations": ders, "derivations_s": t2 - t1, "c2": c2_out, "c2_s": t1 - t0}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
