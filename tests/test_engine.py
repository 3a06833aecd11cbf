"""The one engine (linsam.simulate): its two backends agree, its seed axis shards over
devices without changing a number, it refuses what cannot work before working, and its
results are one self-consistent unit.

Tolerance tiers: linear backend vs generic scan backend in float64: rtol 1e-9 (the same
trajectory in another summation order, GEMM / Gram matrix vs matvecs, over a few steps;
observed ~1e-15; the dual form's norms come from the Gram expansion, whose cancellation
costs a few more ulps). Sharded vs one device: rtol 1e-12 (a smaller batch may change a
product's summation order).
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from linsam import simulate as sim
from linsam.data import MixtureSpec
from simcases import TINY, TINY_DLN, logreg_result

BACKENDS_AGREE = dict(rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def scan_logreg():
    return sim.simulate(TINY, keep_params=True, backend="scan")


def assert_same_metrics(a, b, tol, label):
    assert sorted(a.metrics) == sorted(b.metrics) == sorted(sim.METRICS), label
    for k in a.metrics:
        np.testing.assert_allclose(a.metrics[k], b.metrics[k], **tol, err_msg=f"{label}: {k}")


def test_auto_picks_the_linear_backend_where_it_applies():
    assert {m: sim.backend_of(TINY, m) for m in ("gd", "one_sam", "lsam", "jsam", "jreg")} == dict.fromkeys(
        ("gd", "one_sam", "lsam", "jsam", "jreg"), "linear")
    assert sim.backend_of(TINY, "nsam") == "scan"  # not a per-example reweighting
    assert sim.backend_of(TINY.replace(batch_size=4), "one_sam") == "scan"  # mini-batch
    assert sim.backend_of(TINY_DLN, "one_sam") == "scan"  # nonlinear in the parameters
    assert logreg_result().backend == {"gd": "linear", "one_sam": "linear"}


@pytest.mark.parametrize("form", ["dual", "primal"])
def test_linear_backend_equals_scan_backend(form, scan_logreg):
    """Every metric and the recorded weights, both forms, float64."""
    lin = logreg_result() if form == "dual" else sim.simulate(TINY, keep_params=True, backend="linear", form=form)
    assert scan_logreg.backend == {"gd": "scan", "one_sam": "scan"}
    assert_same_metrics(lin, scan_logreg, BACKENDS_AGREE, form)
    np.testing.assert_allclose(lin.params, scan_logreg.params, **BACKENDS_AGREE)


def test_linear_backend_equals_scan_backend_on_anisotropic_data():
    """The dual form's accuracy moments with a second Gram matrix X Sigma X^T (non-isotropic)."""
    cfg = TINY.replace(methods=("one_sam",), num_seeds=1, seed_chunk=0,
                       data=MixtureSpec("anisotropic", 5, 1.0, alpha=1.5, mean_coords=(1, 3)))
    lin, ref = sim.simulate(cfg, form="dual"), sim.simulate(cfg, backend="scan")
    assert lin.backend == {"one_sam": "linear"}
    assert_same_metrics(lin, ref, BACKENDS_AGREE, "anisotropic")


def test_linear_backend_covers_the_rules_equal_to_gd_and_one_sam(scan_logreg):
    """For logreg L-SAM's closed form is 1-SAM's and J-SAM's, J-reg's are GD's: the linear
    backend trains them as such (J-SAM, J-reg once per seed) with their own metrics."""
    cfg = TINY.replace(methods=("jsam", "lsam", "jreg"))
    res = sim.simulate(cfg, keep_params=True)
    assert set(res.backend.values()) == {"linear"}
    for name, ref in (("jsam", "gd"), ("lsam", "one_sam"), ("jreg", "gd")):
        for k in res.metrics:
            np.testing.assert_allclose(res.sel(k, method=name), scan_logreg.sel(k, method=ref), **BACKENDS_AGREE,
                                       err_msg=f"{name} {k}")


def test_linear_backend_refused_where_it_does_not_apply():
    with pytest.raises(ValueError, match="backend 'linear' does not apply to methods"):
        sim.simulate(TINY.replace(methods=("gd", "nsam")), backend="linear")
    with pytest.raises(ValueError, match="backend must be one of"):
        sim.simulate(TINY, backend="gpu")


def test_rho_free_methods_train_once_and_evaluate_every_rho(scan_logreg):
    """GD's trajectory is the same at every rho (one run), its rho-dependent metrics are not."""
    for res in (logreg_result(), scan_logreg):
        p = res.params[0]  # gd: (rho, seed, T, d)
        assert np.array_equal(p[0], p[1]) and np.array_equal(p[0], p[2])
        pen = res.sel("jsam_penalty", rule="gd")
        np.testing.assert_allclose(pen[2] / 1.5, pen[1] / 0.7, rtol=1e-12)  # rho * (a rho-free mean)


def test_xarray_dataset_view():
    res = logreg_result()
    ds = res.ds
    assert tuple(ds["test_acc"].dims) == sim.AXES
    assert list(ds["rule"].values) == list(TINY.methods)
    # the dim is named "rule": no clash with sel's own `method` keyword (inexact matches)
    np.testing.assert_array_equal(ds["train_acc"].sel(rule="one_sam", rho=0.7).values,
                                  res.sel("train_acc", rule="one_sam", rho=0.7))
    np.testing.assert_array_equal(ds["noise_rate"].values, res.noise_rate)
    assert json.loads(ds.attrs["config"])["name"] == TINY.name


# ----------------------------------------------------------------------------- sharding

_SHARD_SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from linsam import simulate as sim
    from simcases import TINY, TINY_DLN
    assert len(jax.devices()) == 4, jax.devices()
    worst = 0.0
    cfgs = [TINY.replace(num_seeds=3, seed_chunk=0)]
    if {with_dln!r}:
        cfgs.append(TINY_DLN.replace(methods=("one_sam",), num_seeds=3, seed_chunk=0))
    for cfg in cfgs:
        many = sim.simulate(cfg)
        one = sim.simulate(cfg, devices=jax.devices()[:1])
        for k in one.metrics:
            a, b = many.metrics[k], one.metrics[k]
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=f"{{cfg.model}} {{k}}")
            worst = max(worst, float(np.nanmax(np.abs(a - b))))
    print("OK", worst)
""")


@pytest.mark.parametrize("with_dln", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["logreg", "logreg+dln"])
def test_seed_axis_sharded_over_four_devices_equals_one_device(tmp_path, with_dln):
    """The linear backend (and, -m slow, the DLN's scan backend) on 4 forced host devices
    (3 seeds: the padding path too) == 1 device."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    script = _SHARD_SCRIPT.format(tests=os.path.dirname(__file__), with_dln=with_dln)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout


_CORES_SCRIPT = textwrap.dedent("""
    import sys
    from linsam._src.engine.shard import use_cpu_cores
    set_to = use_cpu_cores({arg})
    import jax
    jax.devices()
    again = use_cpu_cores(3)  # JAX has started: no effect
    print(set_to, jax.device_count(), again)
""")


@pytest.mark.parametrize("arg, env, expect", [
    ("2", {}, "2 2 None"),
    ("None", {"LINSAM_CPU_DEVICES": "3"}, "3 3 None"),
    ("2", {"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}, "None 1 None"),  # the user's choice wins
])
def test_use_cpu_cores_exposes_one_cpu_device_per_core_unless_chosen(arg, env, expect):
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES", "LINSAM_CPU_DEVICES")}
    out = subprocess.run([sys.executable, "-c", _CORES_SCRIPT.format(arg=arg)], env=dict(base, JAX_PLATFORMS="cpu", **env),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == expect.split()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_use_cpu_cores_refuses_a_bad_count(bad, monkeypatch):
    from linsam._src.engine.shard import use_cpu_cores

    monkeypatch.delenv("JAX_NUM_CPU_DEVICES", raising=False)
    monkeypatch.setenv("XLA_FLAGS", "")
    with pytest.raises(ValueError, match="count .CPU devices. must be a positive integer"):
        use_cpu_cores(bad)


def test_record_gaps_group_into_static_segments():
    from linsam._src.engine.linear import segments

    sizes = tuple(int(x) for x in np.diff(sim.record_steps(TINY), prepend=0))
    segs = segments(sizes)
    assert sum(k * c for k, c in segs) == TINY.steps and sum(c for _, c in segs) == len(sizes)
    assert all(a[0] != b[0] for a, b in zip(segs, segs[1:]))  # maximal runs
    assert segments((0, 1, 1, 10, 10, 10, 4)) == ((0, 1), (1, 2), (10, 3), (4, 1))


# ----------------------------------------------------------------------------- refused before work


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "x..y", "/abs", ".hidden", ""])
def test_name_that_would_write_outside_the_output_root_is_refused(name):
    with pytest.raises(ValueError, match="name must be a plain file name"):
        TINY.replace(name=name)


def test_sweep_that_cannot_fit_in_memory_is_refused_with_the_estimate():
    cfg = TINY.replace(num_seeds=100_000_000, seed_chunk=0)
    with pytest.raises(ValueError, match=r"needs about [\d.e+]+ [GT]iB of memory .*lower num_seeds"):
        sim.simulate(cfg)
    est = sim.estimate_memory(cfg)
    assert est["host"] > 2**40  # 1e8 seeds x 2 x 3 x 5 records x 18 metrics x 8 bytes alone: 4 TiB


# ----------------------------------------------------------------------------- results as one unit


def test_results_from_different_runs_are_refused(tmp_path):
    a = logreg_result().save(tmp_path / "a")
    other = sim.simulate(TINY.replace(num_seeds=1, seed_chunk=0, name="other"))
    b = other.save(tmp_path / "b")
    (a / "config.json").write_bytes((b / "config.json").read_bytes())
    with pytest.raises(ValueError, match="not from the same run"):
        sim.SweepResult.load(a)


# arrays that disagree with their config, one run id and content hash in both files, edited and
# damaged files, legacy results.npz: tests/test_results.py
