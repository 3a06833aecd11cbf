"""Reliability of the command line (issue 14, items 1-3), run as the real CLI in a subprocess.

1. An output location is checked before any work: a bad ``--out`` / ``--render`` / ``--results``
   is refused with exit status 2 and one line (no sweep runs, no traceback).
2. ``linsam reproduce`` builds its result in a staging directory and moves it in at the end: a
   rerun killed half way leaves the previous result as it was (no mix, no temp files).
3. SIGINT exits with 130, SIGTERM with 143, with one line and no traceback; the background
   worker (``paper_checks._worker``) never outlives its parent, even on SIGKILL of the parent.

The reproduce runs use the tiny mode restricted by a ``--config REPRODUCE=plan.toml`` (one check
or two figures), and a signal is sent right after the progress line that says the work started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from linsam import cli

LINUX_PROC = Path("/proc/self/stat").exists()
needs_proc = pytest.mark.skipif(not LINUX_PROC, reason="reads the process table from /proc (Linux)")

# The CLI as a process. SIGINT is given Python's usual handler explicitly: a process started in
# the background by a shell inherits SIGINT ignored, which would hide what a Ctrl-C does.
_CLI = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from linsam.cli import main; sys.exit(main())")

# What `linsam reproduce` runs (reproduce.toml keys): one sweep-based check with the background
# worker (the signal tests; the signal comes during C4's sweep, before F1), or two figures and no
# worker (the staging test). (An empty list means all of them.)
PLAN_SWEEP = 'checks = ["C4"]\nfigures = ["F1"]\nbackground = true\nderivations = ["D1"]\n'
PLAN_FIGURES = 'checks = ["C8"]\nfigures = ["F1", "F2"]\nbackground = false\nderivations = []\n'


class _Cli:
    """``linsam ARGS`` in its own session; stderr lines collected as they come."""

    def __init__(self, args: list[str], cwd: Path):
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        self.proc = subprocess.Popen([sys.executable, "-c", _CLI, *args], cwd=cwd, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.lines: list[str] = []  # stderr
        self.out: list[str] = []  # stdout
        self._readers = [threading.Thread(target=self._read, args=(f, dest), daemon=True)
                         for f, dest in ((self.proc.stderr, self.lines), (self.proc.stdout, self.out))]
        for r in self._readers:
            r.start()

    @staticmethod
    def _read(stream, dest: list[str]) -> None:
        for line in stream:
            dest.append(line.rstrip("\n"))

    def _join(self) -> None:
        for r in self._readers:
            r.join(timeout=5)

    def wait_for(self, text: str, timeout: float = 240.0) -> int:
        """Index of the first stderr line containing ``text`` (fails if the process ends first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, line in enumerate(self.lines):
                if text in line:
                    return i
            if self.proc.poll() is not None:
                self._join()
                if any(text in line for line in self.lines):
                    continue
                pytest.fail(f"process ended (rc {self.proc.returncode}) before {text!r}:\n" + "\n".join(self.lines))
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"no {text!r} within {timeout} s:\n" + "\n".join(self.lines))

    def finish(self, timeout: float = 120.0) -> int:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"still running {timeout} s later:\n" + "\n".join(self.lines))
        self._join()
        return self.proc.returncode

    def kill(self) -> None:
        with _suppress():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(d.name))
    return out


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _workers(pid: int) -> list[int]:
    return [c for c in _children(pid) if "paper_checks._worker" in _cmdline(c)]


def _gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(_running(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def _plan(tmp_path: Path, text: str) -> str:
    p = tmp_path / "plan.toml"
    p.write_text(text)
    return f"REPRODUCE={p}"


def _sim_config(tmp_path: Path, steps: int = 20) -> Path:
    """A small linear sweep config named "long" (written here: independent of the shipped files)."""
    p = tmp_path / "long.toml"
    p.write_text(f"""name = "long"
model = "logreg"
methods = ["gd", "one_sam"]
rhos = [0.0, 1.0]
num_seeds = 2
n = 40
steps = {steps}
lr = 1.0
init_scale = 1.0
dtype = "float32"

[data]
kind = "isotropic"
d = 20

[noise]
kind = "symmetric"
rate = 0.3
""")
    return p


def _leftovers(root: Path) -> list[str]:
    """Temp files and staging directories under ``root``."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith(".tmp") or p.name.startswith(".linsam-"))


# ----------------------------------------------------------------------------- item 1: outputs first


@needs_proc
@pytest.mark.parametrize("where", ["proc", "file"])
def test_reproduce_refuses_bad_out_before_any_work(tmp_path, where):
    """Before: every check and figure ran (~36 s quick, ~160 s tiny here), then 23 tracebacks, rc 1."""
    afile = tmp_path / "a_file"
    afile.write_text("not a directory\n")
    out = "/proc/linsam-no-such-dir" if where == "proc" else str(afile)
    run = _Cli(["reproduce", "--tiny", "--out", out], tmp_path)
    rc = run.finish(timeout=60)
    assert rc == 2, run.lines
    assert len(run.lines) == 1 and "--out" in run.lines[0] and out in run.lines[0], run.lines
    assert afile.read_text() == "not a directory\n"


def test_every_output_flag_is_checked_before_any_work(tmp_path, capsys):
    """check/figures/derive --render/bench/regimes/simulate: rc 2 and one line naming the flag."""
    afile = tmp_path / "a_file"
    afile.write_text("x")
    below_file = str(afile / "sub")  # cannot be created: its parent is a file
    cfg = str(_sim_config(tmp_path))
    cases = [
        (["check", "C4", "--tiny", "-q", "--out", below_file], "--out"),
        (["check", "C4", "--tiny", "-q", "--out", str(afile)], "--out"),
        (["figures", "F1", "--tiny", "-q", "--out", str(afile)], "--out"),
        (["figures", "F1", "--tiny", "-q", "--out", below_file], "--out"),
        (["derive", "--render", str(afile)], "--render"),
        (["bench", "--tiny", "--quiet", "--out", str(tmp_path)], "--out"),  # a directory, not a file
        (["bench", "--tiny", "--quiet", "--out", str(afile / "B.md")], "--out"),
        (["regimes", "--results", str(tmp_path), "--out", str(tmp_path)], "--out"),
        (["regimes", "--run", "--results", str(afile), "--out", str(tmp_path / "r.md")], "--results"),
        (["simulate", "--config", cfg, "--out", str(afile)], "--out"),
        (["simulate", "--config", cfg, "--out", below_file], "--out"),
    ]
    if LINUX_PROC:
        cases.append((["simulate", "--config", cfg, "--out", "/proc/linsam-x"], "--out"))
    for argv, flag in cases:
        t0 = time.perf_counter()
        rc = cli.main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, argv
        assert len(err) == 1 and flag in err[0] and "error" in err[0], (argv, err)
        assert time.perf_counter() - t0 < 30, argv  # refused, not computed
    assert afile.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "long.toml"]


def test_simulate_config_directory_is_refused_in_one_line(tmp_path, capsys):
    """Before: IsADirectoryError traceback."""
    assert cli.main(["simulate", "--config", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--config" in err[0] and "directory" in err[0]
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- item 2: staging


def _finished_run(d: Path) -> dict[str, bytes]:
    """A previous, finished seed-0 result in ``d`` (its files and their contents)."""
    files = {
        "report.md": b"# linsam reproduce: report\n- mode tiny, seed 0\n- exit status **0**\n",
        "report.json": b'{"seed": 0, "exit_status": 0}\n',
        "figures/f1_lemma31.png": b"old F1 png",
        "figures/f2_linear_accuracy.png": b"old F2 png",
        "notes.txt": b"the user's own file\n",
    }
    for name, data in files.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data)
    return files


def _contents(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in d.rglob("*") if p.is_file()}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_rerun_leaves_the_previous_result_intact(tmp_path, sig):
    """A seed-1 rerun into a finished seed-0 directory, killed after it drew F1.

    Before: report.md still said seed 0 / exit status 0 beside seed-1 figures (and a .tmp)."""
    d = tmp_path / "D"
    before = _finished_run(d)
    run = _Cli(["reproduce", "--tiny", "--seed", "1", "--out", str(d), "--config", _plan(tmp_path, PLAN_FIGURES)],
               tmp_path)
    run.wait_for("figure F1 written")
    run.proc.send_signal(sig)
    rc = run.finish()
    assert rc == (128 + sig if sig != signal.SIGKILL else -signal.SIGKILL)
    visible = {k: v for k, v in _contents(d).items() if not any(part.startswith(".") for part in Path(k).parts)}
    assert visible == before  # the previous result, whole: no seed-1 figure beside the seed-0 report
    if sig != signal.SIGKILL:
        assert _leftovers(d) == []
    else:  # a killed process cannot clean up: only its hidden staging directory remains ...
        assert all(p.startswith(".linsam-staging-") for p in _leftovers(d))
        # ... and the next run's StagedDir on D removes it (its pid no longer runs)
        from linsam._src.atomic import StagedDir

        StagedDir(d).discard()
        assert _leftovers(d) == [] and _contents(d) == before


# ----------------------------------------------------------------------------- item 3: signals


@needs_proc
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_reproduce_signal_during_sweeps_exits_cleanly(tmp_path, sig):
    """Before: SIGINT -> segmentation fault, rc 139; SIGTERM left the worker running."""
    out = tmp_path / "out"
    run = _Cli(["reproduce", "--tiny", "--out", str(out), "--config", _plan(tmp_path, PLAN_SWEEP)], tmp_path)
    run.wait_for("started in a second process")
    start = run.wait_for("] sweep ")
    workers = _workers(run.proc.pid)
    assert workers, "the background worker should be running"
    run.proc.send_signal(sig)
    rc = run.finish()
    after = run.lines[start + 1:]
    assert rc == 128 + sig, run.lines
    assert len(after) == 1 and f"interrupted by {signal.Signals(sig).name}" in after[0], after
    assert _gone_within(workers, 5.0), "the worker outlived the interrupted parent"
    assert not out.exists()  # it did not exist before: nothing is left behind


@needs_proc
def test_worker_dies_with_its_parent_on_sigkill(tmp_path):
    """Before: the worker kept running after SIGKILL of its parent (reparented to init)."""
    run = _Cli(["reproduce", "--tiny", "--out", str(tmp_path / "out"), "--config", _plan(tmp_path, PLAN_SWEEP)],
               tmp_path)
    run.wait_for("started in a second process")
    workers = []
    deadline = time.monotonic() + 30
    while not workers and time.monotonic() < deadline:
        workers = _workers(run.proc.pid)
        time.sleep(0.05)
    assert workers
    run.proc.send_signal(signal.SIGKILL)
    assert run.finish() == -signal.SIGKILL
    # the worker is importing JAX / comparing closed forms for far longer than this
    assert _gone_within(workers, 8.0), "the worker outlived its SIGKILLed parent"


@needs_proc
@pytest.mark.parametrize("command", ["simulate", "check"])
def test_simulate_and_check_exit_130_on_sigint(tmp_path, command):
    """Before: a KeyboardInterrupt traceback (or a segmentation fault), not rc 130 and one line."""
    if command == "simulate":
        cfg = _sim_config(tmp_path, steps=2000)
        args = ["simulate", "--config", str(cfg), "--num-seeds", "400", "--seed-chunk", "1",
                "--out", str(tmp_path / "sim")]
        started = "[linsam simulate long] seeds 1/400"
    else:
        args = ["check", "C4", "--tiny"]
        started = "] sweep "
    run = _Cli(args, tmp_path)
    start = run.wait_for(started)
    run.proc.send_signal(signal.SIGINT)
    rc = run.finish()
    after = [line for line in run.lines[start + 1:] if not line.startswith("[linsam simulate long] seeds")]
    assert rc == 130, run.lines
    assert len(after) == 1 and "interrupted by SIGINT" in after[0], after
    assert not (tmp_path / "sim").exists()
