"""Data parallel and several hosts (issue 22): the CIFAR driver and the sweep engine give the
same numbers on 1 device, on 4 devices of one process, and on 2 processes x 2 devices.

tests/conftest.py starts JAX with one CPU device, so every configuration runs in fresh
subprocesses (tests/dist_worker.py) with ``--xla_force_host_platform_device_count``; the two
processes of the multi-host run meet at a coordinator on 127.0.0.1 (a free port), with bounded
timeouts, and both are killed when either fails. Tolerances: the CIFAR runs are float32 and a
split batch sums in another order (a relative 1e-4 bound on every parameter and metric after
4 steps; measured: 2e-7 on the MLP, 2e-5 for 1-SAM on the ResNet, 3e-6 with BatchNorm); the sweep is float64 with no
cross-device reduction (1e-12).
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("optax")

WORKER = Path(__file__).resolve().parent / "dist_worker.py"
ROOT = WORKER.parent.parent
LIMIT_S = 150  # per run; the 2-process run takes ~25 s on 2 shared cores


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("XLA_FLAGS", None)
    env.pop("JAX_NUM_CPU_DEVICES", None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out: Path, devices: int, processes: int = 1, extra=()) -> dict:
    """Run the worker as ``processes`` processes with ``devices`` CPU devices each; return
    process 0's summary. Every process is killed if one fails or the limit passes."""
    cmd = [sys.executable, str(WORKER), "--devices", str(devices), "--out", str(out), *extra]
    if processes > 1:
        cmd += ["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", str(processes)]
    procs, logs = [], []
    try:
        for i in range(processes):
            log = open(out.parent / f"{out.name}.p{i}.log", "w+")
            logs.append(log)
            ids = ["--process-id", str(i)] if processes > 1 else []
            procs.append(subprocess.Popen(cmd + ids, env=_env(), stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + LIMIT_S
        while any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    codes = [p.returncode for p in procs]
    if codes != [0] * processes:
        text = ""
        for log in logs:
            log.seek(0)
            text += log.read()[-3000:]
        pytest.fail(f"worker exit codes {codes} (devices {devices}, processes {processes}):\n{text}")
    for log in logs:
        log.close()
    with np.load(out / "summary.npz") as z:
        return {k: z[k] for k in z.files}


def max_rel_diff(a: dict, b: dict, prefix: str) -> float:
    keys = [k for k in a if k.startswith(prefix)]
    assert keys and set(keys) == {k for k in b if k.startswith(prefix)}, prefix
    worst = 0.0
    for k in keys:
        x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
        assert x.shape == y.shape, k
        assert np.all(np.isfinite(x)) and np.all(np.isfinite(y)), k
        worst = max(worst, float(np.max(np.abs(x - y), initial=0.0) / max(np.max(np.abs(x), initial=0.0), 1e-30)))
    return worst


GROUPS = ("mlp/gd", "mlp/nsam", "res/one_sam")


def _check(one, other, label, sweeps=("logreg",)):
    assert int(other["devices"]) == 4, label
    for g in GROUPS:
        d = max_rel_diff(one, other, g + "/")
        assert d < 1e-4, f"{g}: 1 device vs {label} differ by {d:.2e} (relative)"
    # the runs moved: equal numbers are not all equal to the start
    assert not np.allclose(one["mlp/nsam/leaf_0"], one["mlp/gd/leaf_0"]), "nsam trained like gd"
    for tag in sweeps:
        d = max_rel_diff(one, other, f"sweep/{tag}/")
        assert d < 1e-12, f"sweep {tag}: 1 device vs {label} differ by {d:.2e}"


def test_two_processes_of_two_devices_equal_one_device(tmp_path):
    """Two processes on localhost (2 CPU devices each, one global mesh of 4): the CIFAR step
    (gd, nsam; one_sam on the ResNet with chunks, data parallel; process 0 writes) and a sweep (seed axis on
    the global mesh) equal one device's, within float32 rounding (the sweep: float64)."""
    one = launch(tmp_path / "one", devices=1)
    two_by_two = launch(tmp_path / "two", devices=2, processes=2)
    assert int(one["devices"]) == 1 and int(two_by_two["processes"]) == 2
    _check(one, two_by_two, "2 processes x 2 devices")
    assert sorted(p.name for p in (tmp_path / "two" / "mlp").iterdir()) == ["gd", "nsam", "results.json"]


@pytest.mark.slow
def test_four_devices_batchnorm_and_scan_sweep_equal_one_device(tmp_path):
    """One process with 4 devices (the 8-GPU-node path) equals one device: the CIFAR step,
    BatchNorm for gd and nsam (its batch statistics are the global batch's, synchronised; per-
    shard statistics would differ), and sweeps on the linear and the scan backend."""
    extra = ["--bn", "--sweeps", "logreg,dln"]
    one = launch(tmp_path / "one", devices=1, extra=extra)
    four = launch(tmp_path / "four", devices=4, extra=extra)
    _check(one, four, "4 devices", sweeps=("logreg", "dln"))
    for g in ("bn/gd", "bn/nsam"):
        d = max_rel_diff(one, four, g + "/")
        assert d < 1e-4, f"{g}: 1 device vs 4 differ by {d:.2e}"


def test_bad_distributed_settings_are_refused_before_connecting(monkeypatch):
    from linsam._src.engine import shard

    for var in (shard.COORDINATOR_ENV, shard.NUM_PROCESSES_ENV, shard.PROCESS_ID_ENV):
        monkeypatch.delenv(var, raising=False)
    assert shard.initialize_distributed() is False  # nothing asked: one process, nothing started
    cases = [(("127.0.0.1:1234", 2, None), "go together"), (("127.0.0.1", 2, 0), "HOST:PORT"),
             (("127.0.0.1:70000", 2, 0), "HOST:PORT"), (("127.0.0.1:1234", 0, 0), "num_processes"),
             (("127.0.0.1:1234", 2, 2), "process_id must be an integer in [0, 2)")]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            shard.initialize_distributed(*args)
    monkeypatch.setenv(shard.NUM_PROCESSES_ENV, "two")
    with pytest.raises(ValueError, match="LINSAM_NUM_PROCESSES must be an integer"):
        shard.initialize_distributed()


def test_a_batch_that_does_not_split_over_the_devices_is_refused(capsys):
    from linsam.cifar import parallel
    from linsam.cifar import train as T
    from linsam.cli import main

    with pytest.raises(ValueError, match=r"--batch-size \(batch_size\) \(100\) must be a multiple of the 8 devices"):
        parallel.check_split(T.CifarConfig(batch_size=100), 8)
    with pytest.raises(ValueError, match=r"--eval-batch-size .* multiple of the 3 devices"):
        parallel.check_split(T.CifarConfig(batch_size=96, eval_batch_size=1000), 3)
    parallel.check_split(T.CifarConfig(batch_size=128, eval_batch_size=1000), 8)  # the paper's: fine
    assert main(["cifar", "--preset", "tiny", "--out", "unused", "--devices", "2"]) == 2
    assert "--devices must be an integer in [1, 1]" in capsys.readouterr().err


TINY_SWEEP = """
name = "tiny_dist"
methods = ["gd", "one_sam", "nsam"]
rhos = [0.0, 0.7]
num_seeds = 3
n = 12
steps = 6
record_every = 2
record_dense = 2
lr = 0.5
init_scale = 1.0
hidden = 3
model = "dln"
dtype = "float64"
[data]
kind = "isotropic"
d = 5
mean_norm = 1.0
sigma = 0.8
[noise]
kind = "symmetric"
rate = 0.25
"""


@pytest.mark.slow
def test_linsam_simulate_on_two_processes_saves_the_one_process_result(tmp_path):
    """``linsam simulate --coordinator ... --num-processes 2 --process-id I`` (2 CPU devices each):
    process 0 saves, and the saved sweep equals one process's (float64)."""
    from linsam._src.engine.results import SweepResult

    (tmp_path / "tiny.toml").write_text(TINY_SWEEP)
    code = "import sys; from linsam.cli import main; sys.exit(main())"
    base = [sys.executable, "-c", code, "simulate", "--config", str(tmp_path / "tiny.toml")]
    env = dict(_env(), JAX_PLATFORMS="cpu")
    one = subprocess.run(base + ["--out", str(tmp_path / "one")], env=dict(env, LINSAM_CPU_DEVICES="1"),
                         capture_output=True, text=True, timeout=LIMIT_S)
    assert one.returncode == 0, one.stderr[-2000:]
    port = _free_port()
    procs = [subprocess.Popen(base + ["--out", str(tmp_path / "two"), "--coordinator", f"127.0.0.1:{port}",
                                      "--num-processes", "2", "--process-id", str(i), "--init-timeout", "60"],
                              env=dict(env, LINSAM_CPU_DEVICES="2"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for i in range(2)]
    try:
        outs = [p.communicate(timeout=LIMIT_S)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "saved" in outs[0] and "saved" not in outs[1], outs  # process 0 alone saves
    a, b = SweepResult.load(tmp_path / "one"), SweepResult.load(tmp_path / "two")
    for k in a.metrics:
        np.testing.assert_allclose(b.metrics[k], a.metrics[k], rtol=1e-12, atol=1e-14, err_msg=k)
