"""The CIFAR driver as the one device run uses it (issue 15): what lands in OUT, one compiled
training program per method, a failed figure, the time plan, and how a stopped run is recorded.

Same tiny setup as tests/test_cifar.py (8x8 synthetic images, width 4, depth 6, XLA's fast
compile); configurations repeat test_cifar.py's where they can, so compiled programs are reused.
"""

import json
import os
import signal
import sys
import time

import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("optax")

from test_cifar import fast_compile, synthetic, tiny_config  # noqa: E402,F401  (fast_compile: autouse fixture)

from linsam.cifar import train as T  # noqa: E402


def test_block_length_divides_the_epoch():
    assert T.block_length(78, 20) == 13  # the budget preset: 6 blocks of 13, one program
    assert T.block_length(390, 100) == 78 and T.block_length(7, 3) == 1 and T.block_length(4, 100) == 4
    for steps in range(1, 60):
        for every in (1, 2, 5, 20):
            b = T.block_length(steps, every)
            assert steps % b == 0 and 1 <= b <= max(1, min(every, steps))


def test_one_training_program_per_method(tmp_path, capsys):
    """6 steps per epoch with log_every 4 used to compile blocks of 4 and of 2 (two programs,
    two compile times charged to the method); now 2 blocks of 3, one program."""
    cfg = tiny_config("gd", log_every=4, epochs=2)
    prep = T.prepare_data(synthetic(n_train=96), cfg)  # no other test trains on 96 images: nothing cached
    n0 = len(T.COMPILE_EVENTS)
    res = T.run_method(cfg, prep, tmp_path, verbose=True)
    assert res["steps_per_epoch"] == 6 and res["status"] == "completed"
    trained = [e for e in T.COMPILE_EVENTS[n0:] if e[0] == "train"]
    assert len(trained) == 1, f"{len(trained)} training programs compiled for one method"
    assert res["compile"]["block_steps"] == 3 and res["compile"]["blocks_per_epoch"] == 2
    assert res["compile"]["train_programs"] == 1
    log = capsys.readouterr().out
    assert "training program(s)" in log and "2 blocks of 3 steps per epoch" in log


def _listing(d):
    return sorted(p.name for p in d.iterdir())


def test_out_holds_only_the_small_files_and_a_failed_figure_is_a_warning(tmp_path, monkeypatch, capsys):
    """Issue 15.1 and 15.3: with a work dir, OUT holds results.json (+ curves.png), checkpoints
    stay in the work dir; without matplotlib every method still runs and results.json is written."""
    out, work = tmp_path / "out", tmp_path / "work"
    cfgs = [tiny_config("gd", epochs=2), tiny_config("one_sam", epochs=2)]
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    agg = T.run(cfgs, out, dataset=synthetic(), verbose=False, plot=True, work_dir=work)
    assert "figure not drawn" in capsys.readouterr().err
    assert {m: r["status"] for m, r in agg["methods"].items()} == {"gd": "completed", "one_sam": "completed"}
    assert _listing(out) == ["results.json"]
    assert _listing(work) == ["gd", "one_sam"]
    for m in ("gd", "one_sam"):
        assert _listing(work / m) == ["checkpoint.npz", "results.json"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["methods"]["one_sam"]["completed_epochs"] == 2
    monkeypatch.undo()  # matplotlib back (the module object itself: its submodules stay consistent)
    pytest.importorskip("matplotlib")
    T.finalize(out, work_dir=work)
    assert _listing(out) == ["curves.png", "results.json"]
    assert (out / "curves.png").stat().st_size > 1000


def test_compile_is_charged_and_a_late_start_is_recorded(tmp_path, monkeypatch):
    """Issue 15.5: a compile that uses up the time limit leaves no epoch started (the first
    epoch used to run regardless); a method with no time left is recorded, not dropped."""
    cfg = tiny_config("gd", time_limit_s=2.0)
    prep = T.prepare_data(synthetic(), cfg)
    real_compile = T.Trainer.compile

    def slow_compile(self, state):
        s = real_compile(self, state)
        time.sleep(2.5)
        return s + 2.5

    monkeypatch.setattr(T.Trainer, "compile", slow_compile)
    res = T.run_method(cfg, prep, tmp_path / "a", verbose=False)
    assert res["status"] == "time_limit" and res["epochs"] == [], res["stop_reason"]
    assert res["timing"]["compile_s"] >= 2.5
    late = T.run_method(tiny_config("gd"), prep, tmp_path / "b", verbose=False, deadline=time.monotonic() - 1)
    assert late["status"] == "time_limit" and "no time left" in late["stop_reason"]
    assert json.loads((tmp_path / "b" / "results.json").read_text())["status"] == "time_limit"


def test_the_time_plan_charges_the_checkpoint_write(tmp_path, monkeypatch):
    """Issue 15.5: the estimate of the next epoch includes the writes that end an epoch. With a
    1 s checkpoint write and a 4 s limit, the old estimate (training + evaluation only) started
    a third epoch that ended past the limit; the method must end inside it."""
    cfg = tiny_config("gd", epochs=5)
    prep = T.prepare_data(synthetic(), cfg)
    T.run_method(cfg.replace(epochs=1), prep, tmp_path / "warm", verbose=False)  # compile outside the clock
    real_save = T.save_checkpoint

    def slow_save(path, state, meta):
        time.sleep(1.0)
        real_save(path, state, meta)

    from linsam.cifar import loop

    monkeypatch.setattr(loop, "save_checkpoint", slow_save)  # where run_method looks it up
    limit = 4.0
    t0 = time.monotonic()
    res = T.run_method(cfg.replace(time_limit_s=limit), prep, tmp_path / "run", verbose=False)
    elapsed = time.monotonic() - t0
    assert res["status"] == "time_limit" and 1 <= len(res["epochs"]) < 5, res["stop_reason"]
    assert elapsed <= limit, f"the method ran {elapsed:.2f}s past its {limit}s limit"
    assert res["timing"]["max_write_s"] >= 1.0


def test_a_method_stopped_from_outside_is_recorded(tmp_path, monkeypatch):
    """Issue 15.5: SIGTERM (the guard) leaves status "killed" in both results files; a process
    killed outright (SIGKILL) leaves "running", which finalize() turns into "killed"."""
    out, work = tmp_path / "out", tmp_path / "work"
    cfg = tiny_config("gd", epochs=3)
    real = T.Trainer.train_epoch

    def terminated(self, state, epoch, progress=None, **kw):
        if epoch == 1:
            raise T.Terminated("SIGTERM")
        return real(self, state, epoch, progress, **kw)

    monkeypatch.setattr(T.Trainer, "train_epoch", terminated)
    with pytest.raises(T.Terminated):
        T.run([cfg], out, dataset=synthetic(), verbose=False, plot=False, work_dir=work)
    r = json.loads((out / "results.json").read_text())["methods"]["gd"]
    assert r["status"] == "killed" and r["completed_epochs"] == 1 and "SIGTERM" in r["stop_reason"]
    # SIGKILL: nothing ran in the process; the method's file still says "running"
    per = json.loads((work / "gd" / "results.json").read_text())
    per["status"] = "running"
    (work / "gd" / "results.json").write_text(json.dumps(per))
    (out / ".results.json.x1y2.tmp").write_text("half")  # a write the kill cut short
    agg = T.finalize(out, work_dir=work, killed=True, plot=False)
    assert agg["methods"]["gd"]["status"] == "killed" and "outer time guard" in agg["methods"]["gd"]["stop_reason"]
    assert _listing(out) == ["results.json"]


def test_sigterm_becomes_terminated_in_the_cli():
    from linsam.cli import cifar as cli_cifar

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(T.Terminated):
        with cli_cifar._SigtermAsException(T.Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)  # the handler runs at the next bytecode
    assert signal.getsignal(signal.SIGTERM) is before  # restored


def test_method_deadlines_split_the_time_left():
    shares = {"gd": 1, "one_sam": 2, "jsam": 2}
    assert T.method_deadlines(0.0, 100.0, shares, ["gd", "one_sam", "jsam"]) == pytest.approx(20.0)
    # gd ended at 10 s: the 90 s left go to the two SAM methods equally
    assert T.method_deadlines(10.0, 100.0, shares, ["one_sam", "jsam"]) == pytest.approx(55.0)
    assert T.method_deadlines(60.0, 100.0, shares, ["jsam"]) == pytest.approx(100.0)
    assert T.method_deadlines(120.0, 100.0, shares, ["jsam"]) == pytest.approx(120.0)  # none left: now
    assert T.method_deadlines(0.0, None, shares, ["gd"]) is None


def test_process_start_is_before_now():
    from linsam.cli import cifar as cli_cifar

    start = cli_cifar.process_start_monotonic()
    assert np.isfinite(start) and start <= time.monotonic() and start <= cli_cifar._IMPORTED + 1e-6


def test_epoch_time_range_is_the_roofline_and_the_efficiency_range():
    from linsam.cifar import budget

    costs = {"gd": {"flops": 1e12, "bytes_accessed": 1e9}, "one_sam": {"flops": 2e12, "bytes_accessed": 1e12},
             "eval": {"flops": 1e12, "images": 1000}}
    r = budget.epoch_time_range(costs, steps=10, eval_images=2000, peak_flops=1e13, bandwidth=1e12,
                                efficiency={"gd": (0.5, 1.0), "one_sam": (0.1, 0.5), "eval": (0.5, 1.0)})
    assert r["gd"]["lower_s"] == pytest.approx(1.0 + 0.2)  # FLOP-bound: 1e13 / 1e13, eval 2e12 / 1e13
    assert r["one_sam"]["lower_s"] == pytest.approx(10.0 + 0.2)  # memory-bound: 1e13 bytes / 1e12
    assert r["gd"]["expected_s"] == pytest.approx((1.0 + 0.2, 2.0 + 0.4))
    assert r["one_sam"]["expected_s"] == pytest.approx((4.0 + 0.2, 20.0 + 0.4))


def test_the_first_block_is_charged_at_the_previous_methods_rate(tmp_path):
    """Issue 15.5: the first block of a method, before it is timed, is charged its FLOPs (XLA's
    cost analysis) at the seconds per FLOP measured on the method before it."""
    cfg = tiny_config("gd", time_limit_s=600.0)
    prep = T.prepare_data(synthetic(), cfg)
    slow = T.run_method(cfg, prep, tmp_path / "slow", verbose=False, seconds_per_flop=1.0)  # ~1e8 s per block
    assert slow["status"] == "time_limit" and slow["epochs"] == [] and "not run yet" in slow["stop_reason"]
    fast = T.run_method(cfg, prep, tmp_path / "fast", verbose=False, seconds_per_flop=1e-15)
    assert fast["status"] == "completed" and fast["timing"]["block_flops"] > 0
