"""Second process of ``linsam reproduce``: the SymPy proofs and C2's float64 comparison.

Run as ``python -m paper_checks._worker '<json settings>'``; prints one JSON line
``{"derivations": [...], "derivations_s": .., "c2": {...}, "c2_s": ..}`` on stdout.
(:class:`reproduction.context.Context` starts it so that this CPU-bound, JAX-free-ish work
overlaps the sweeps' compilation in the main process.)

It never outlives the process that started it (``LINSAM_PARENT_PID``): on Linux the kernel
sends it SIGKILL when that process ends, however it ends (``prctl(PR_SET_PDEATHSIG)``);
elsewhere, or if that call is refused, a thread checks once a second that the parent is still
there. SIGINT (a Ctrl-C reaches the whole process group) ends it quietly: the parent decides.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int | None) -> str:
    """Arrange to end when process ``parent`` ends; return how ("pdeathsig" or "poll")."""
    how = "poll"
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                how = "pdeathsig"
        except (OSError, AttributeError):
            pass
    if parent is not None and os.getppid() != parent:  # the parent ended before prctl took effect
        os._exit(1)
    if how == "poll":
        start = os.getppid()

        def watch() -> None:
            while True:
                time.sleep(1.0)
                if os.getppid() != start:
                    os._exit(1)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    return how


def main(argv: list[str]) -> int:
    parent = os.environ.get("LINSAM_PARENT_PID")
    _die_with_parent(int(parent) if parent and parent.isdigit() else None)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
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
