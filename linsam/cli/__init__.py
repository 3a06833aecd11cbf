"""The ``linsam`` command line.

Subcommands live in their own modules; each exposes ``register(subparsers)`` which adds
one or more sub-parsers whose ``func`` attribute is called with the parsed namespace and
returns an exit status. Modules are imported lazily so ``linsam --help`` stays fast.

Shared by the subcommands (see docs/reliability.md):

- :func:`out_dir` / :func:`out_file`: an output location is checked before any work (exists
  or can be created, is writable, is not a file / not a directory); a bad one is refused with
  one line and exit status 2.
- :class:`StopOnSignal`: SIGINT, SIGTERM and SIGHUP stop the command at once with one line on
  stderr and exit status 128 + signal (130, 143, 129): registered cleanups run (a child
  process is killed), temporary files and staging directories are removed, the previous
  results are left as they were.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import linsam

# Modules providing subcommands (each has ``register(subparsers)``).
SUBCOMMAND_MODULES = (
    "linsam.cli.demo",
    "linsam.cli.derive",
    "linsam.cli.simulate",
    "linsam.cli.reproduce",
    "linsam.cli.cifar",
    "linsam.cli.cifar_study",
    "linsam.cli.bench",
)


class UsageError(ValueError):
    """A bad argument found by a subcommand: one line on stderr, exit status 2."""


def out_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` as an output directory, checked before any work (see
    :func:`linsam._src.atomic.check_writable_dir`); :class:`UsageError` naming ``flag`` if not."""
    from linsam._src.atomic import check_writable_dir

    try:
        check_writable_dir(path)
    except ValueError as err:
        raise UsageError(f"{flag} {str(path)!r}: {err}") from None
    return Path(path)


def out_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` as an output file, checked before any work; :class:`UsageError` naming ``flag`` if not."""
    from linsam._src.atomic import check_writable_file

    try:
        check_writable_file(path)
    except ValueError as err:
        raise UsageError(f"{flag} {str(path)!r}: {err}") from None
    return Path(path)


_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)


class StopOnSignal:
    """While active, SIGINT / SIGTERM / SIGHUP end the process at once: exit status 128 + signal.

    ``with StopOnSignal("linsam reproduce", note=...) as stop: stop.add(cleanup); ...``

    On a signal: every cleanup added with :meth:`add` runs (errors ignored), the temporary
    files and staging directories being written are removed
    (:func:`linsam._src.atomic.discard_pending`), one line ``<prog>: interrupted by SIGINT
    (exit status 130)[; note]`` goes to stderr, and the process ends with ``os._exit``.

    Why not KeyboardInterrupt: the main thread may be inside a long XLA computation, where a
    Python handler does not run until it returns, and unwinding JAX's threads at interpreter
    exit crashed (segmentation fault, exit status 139). The handler is therefore also woken
    through :func:`signal.set_wakeup_fd` on a watcher thread, which acts within milliseconds
    even while the main thread is in native code; ``os._exit`` skips the interpreter teardown.
    Only active in the main thread (elsewhere it does nothing).
    """

    def __init__(self, prog: str, note: str = ""):
        self.prog = prog
        self.note = note
        self._cleanups: list[Callable[[], object]] = []
        self._lock = threading.Lock()
        self._active = False

    def add(self, cleanup: Callable[[], object]) -> None:
        """Run ``cleanup()`` before exiting on a signal (last added, first run)."""
        self._cleanups.append(cleanup)

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is not threading.main_thread():
            return self
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)
        self._old_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        self._old = {s: signal.signal(s, self._handler) for s in _SIGNALS}
        self._active = True
        self._watcher = threading.Thread(target=self._watch, name="linsam-signal-watcher", daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self._active:
            return
        for s, h in self._old.items():
            signal.signal(s, h)
        signal.set_wakeup_fd(self._old_fd)
        self._active = False
        os.write(self._w, b"\0")  # wake the watcher: 0 is no signal, it returns
        self._watcher.join(timeout=5)
        os.close(self._r)
        os.close(self._w)

    def _handler(self, signum, frame) -> None:  # main thread, between bytecodes
        self._stop(signum)

    def _watch(self) -> None:  # any time, even while the main thread is in native code
        while True:
            try:
                data = os.read(self._r, 1)
            except OSError:
                return
            if not data or data[0] == 0:
                return
            if data[0] in {int(s) for s in _SIGNALS}:
                self._stop(data[0])

    def _stop(self, signum: int) -> None:
        self._lock.acquire()  # the first caller exits; a second one waits for that
        from linsam._src.atomic import discard_pending

        for fn in reversed(self._cleanups):
            try:
                fn()
            except BaseException:  # noqa: BLE001 - best effort, we are exiting
                pass
        discard_pending()
        name = signal.Signals(signum).name
        status = 128 + signum
        line = f"{self.prog}: interrupted by {name} (exit status {status})" + (f"; {self.note}" if self.note else "")
        try:
            os.write(2, (line + "\n").encode())
        except OSError:
            pass
        os._exit(status)


def build_parser():
    import argparse
    import importlib

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


#: Commands that run the sweep engine (they get one CPU device per core).
ENGINE_COMMANDS = frozenset({"simulate", "reproduce", "regimes", "demo", "figures", "check", "bench"})


#: Commands that handle SIGINT / SIGTERM themselves once their work starts (``cifar`` marks its
#: results "interrupted" / "killed" to resume later): they take over with :func:`hand_over_signals`.
SELF_SIGNALLED = frozenset({"cifar"})

# The process-wide StopOnSignal that main() installs first of all (None outside main()).
_EARLY: StopOnSignal | None = None


def hand_over_signals() -> None:
    """End the early signal handling of :func:`main` (the handlers from before it come back):
    for a command that handles SIGINT / SIGTERM itself from here on. No-op outside main()."""
    global _EARLY
    if _EARLY is not None:
        early, _EARLY = _EARLY, None
        early.__exit__(None, None, None)


def main(argv: list[str] | None = None) -> int:
    """The command line. Signal handling (:class:`StopOnSignal`) is installed before anything
    heavy is imported (argument parsing, NumPy, JAX), so a Ctrl-C at any moment after the
    interpreter has started exits with 130 (SIGTERM 143) and one line, and writes nothing."""
    global _EARLY
    prog = "linsam" + next((f" {a}" for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), "")
    early = StopOnSignal(prog, note="stopped before any result was written")
    _EARLY = early.__enter__()
    try:
        return _main(argv, early)
    finally:
        hand_over_signals()


def _main(argv: list[str] | None, early: StopOnSignal) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    early.prog, early.note = f"linsam {args.command}", ""
    if args.command in ENGINE_COMMANDS:
        from linsam._src.engine.shard import use_cpu_cores

        use_cpu_cores()  # seeds in parallel, one CPU device per core (no-op once JAX has started)
    try:
        return int(args.func(args) or 0)
    except UsageError as err:
        print(f"linsam {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
