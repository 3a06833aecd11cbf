"""linsam.fastsweep: the fast GD / 1-SAM sweep follows the core closed form exactly, and its
device sharding changes nothing.

Tolerance tiers (tests/README convention):
- exact identity, float64, rtol 1e-10: the sweep against the core rule stepped in a plain loop
  (the same arithmetic in another summation order; 1e-10 leaves room for ulps compounding
  over the steps, observed ~1e-15);
- float32 against float64: rtol 1e-4 (float32 rounding over tens of steps).
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linsam import fastsweep as fs
from linsam import logreg

RTOL = 1e-10


def problem(key, n=24, d=16, S=None, scale=1.5):
    kx, kt, kn = jax.random.split(key, 3)
    lead = (n,) if S is None else (S, n)
    X = scale * jax.random.normal(kx, lead + (d,)) / np.sqrt(d)
    t = jnp.where(jax.random.bernoulli(kt, 0.5, lead), 1.0, -1.0)
    noisy = np.asarray(jax.random.bernoulli(kn, 0.25, lead))
    return X, t, noisy


def core_loop(w0, X, t, rho, lr, steps, record_every):
    """The core closed-form rule stepped in a plain Python loop; weights at the record steps."""
    w = jnp.asarray(w0)
    rec = [w]
    for i in range(steps):
        w = w - lr * (logreg.gd(w, X, t) if rho == 0 else logreg.one_sam(w, X, t, rho))
        if (i + 1) % record_every == 0:
            rec.append(w)
    return np.stack(rec)


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_shared_data_matches_core_loop(form, getkey):
    X, t, noisy = problem(getkey())
    rho = np.array([0.0, 0.05, 0.4, 2.0])
    lr = np.array([0.5, 0.5, 0.3, 0.8])
    w0 = 0.3 * jax.random.normal(getkey(), (16,))
    res = fs.logreg_sweep(X, t, rho, lr=lr, steps=30, record_every=10, w0=w0, noisy=noisy, form=form)
    assert res.form == form and res.w.shape == (4, 16) and res.metrics["loss"].shape == (4, 4)
    np.testing.assert_array_equal(res.steps, [0, 10, 20, 30])
    for r in range(4):
        ref = core_loop(w0, X, t, rho[r], lr[r], 30, 10)
        assert rel(res.w[r], ref[-1]) <= RTOL, f"{form} sweep vs core loop, run {r} (rho={rho[r]})"
        assert rel(res.metrics["w_norm"][r], np.linalg.norm(ref, axis=1)) <= RTOL, f"{form}: w_norm at records"
        z = np.asarray(t)[None] * (ref @ np.asarray(X).T)
        loss = np.mean(np.logaddexp(0, -z), axis=1)
        assert rel(res.metrics["loss"][r], loss) <= RTOL, f"{form}: loss at records"
        assert rel(res.metrics["train_acc"][r], np.mean(z > 0, axis=1)) <= RTOL, f"{form}: train_acc at records"
    # the runs really differ (1-SAM is not GD here)
    assert rel(res.w[2], res.w[0]) > 1e-3


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_seed_sweep_matches_core_loop_per_dataset(form, getkey):
    X, t, noisy = problem(getkey(), n=20, d=12, S=3)
    w0 = 0.2 * jax.random.normal(getkey(), (3, 12))  # one start per seed
    rho = [0.0, 0.3]
    res = fs.logreg_sweep(X, t, rho, lr=0.7, steps=20, record_every=5, w0=w0, noisy=noisy, form=form, seed_block=2)
    assert res.w.shape == (3, 2, 12) and res.metrics["train_acc_noisy"].shape == (3, 2, 5)
    for s in range(3):
        for r in range(2):
            ref = core_loop(w0[s], X[s], t[s], rho[r], 0.7, 20, 5)
            assert rel(res.w[s, r], ref[-1]) <= RTOL, f"{form} seed sweep vs core loop, seed {s}, run {r}"


def test_primal_and_dual_agree_and_gd_is_rho_zero(getkey):
    X, t, noisy = problem(getkey(), n=30, d=50)
    a = fs.logreg_sweep(X, t, [0.0, 0.2], lr=0.4, steps=40, record_every=8, noisy=noisy, form="primal")
    b = fs.logreg_sweep(X, t, [0.0, 0.2], lr=0.4, steps=40, record_every=8, noisy=noisy, form="dual")
    assert rel(b.w, a.w) <= RTOL
    for k in a.metrics:
        np.testing.assert_allclose(b.metrics[k], a.metrics[k], rtol=RTOL, atol=1e-13, err_msg=f"metric {k}")
    ref = core_loop(np.zeros(50), X, t, 0.0, 0.4, 40, 8)
    assert rel(a.w[0], ref[-1]) <= RTOL, "rho = 0 run vs the core GD rule"


def test_metrics_match_their_definitions(getkey):
    X, t, noisy = problem(getkey(), n=40, d=10)
    Xte, tte, _ = problem(getkey(), n=15, d=10)
    rho = 0.3
    res = fs.logreg_sweep(X, t, rho, lr=0.5, steps=10, record_every=10, noisy=noisy, X_test=Xte, t_test=tte)
    w = res.w[0]
    z = np.asarray(t) * (np.asarray(X) @ w)
    xn = np.linalg.norm(np.asarray(X), axis=1)
    s = 1 / (1 + np.exp(z))
    sam = 1 / (1 + np.exp(z - rho * xn))
    m = {k: v[0, -1] for k, v in res.metrics.items()}
    cl, nz = ~noisy, noisy
    np.testing.assert_allclose(m["train_acc_clean"], np.mean(z[cl] > 0), rtol=1e-12)
    np.testing.assert_allclose(m["train_acc_noisy"], np.mean(z[nz] > 0), rtol=1e-12)
    np.testing.assert_allclose(m["loss_noisy"], np.mean(np.logaddexp(0, -z[nz])), rtol=1e-12)
    np.testing.assert_allclose(m["grad_norm_ratio"], np.mean((s * xn)[cl]) / np.mean((s * xn)[nz]), rtol=1e-12)
    np.testing.assert_allclose(
        m["sam_grad_norm_ratio"], np.mean((sam * xn)[cl]) / np.mean((sam * xn)[nz]), rtol=1e-12
    )
    zt = np.asarray(tte) * (np.asarray(Xte) @ w)
    np.testing.assert_allclose(m["test_acc"], np.mean(zt > 0), rtol=1e-12)
    # an empty noisy group gives NaN group means, never an error
    res0 = fs.logreg_sweep(X, t, rho, lr=0.5, steps=10, record_every=10, noisy=np.zeros(40, bool))
    assert np.all(np.isnan(res0.metrics["train_acc_noisy"])) and np.all(np.isfinite(res0.metrics["loss_clean"]))


@pytest.mark.parametrize("form", ["primal", "dual"])
def test_custom_metrics_see_the_weights(form, getkey):
    """A metrics function reading state.w gets the weights at the record step (the dual form
    rebuilds them only then), and state.w_norm (from the Gram matrix in the dual form) is ||w||."""
    X, t, _ = problem(getkey(), n=20, d=30)
    w0 = 0.5 * jax.random.normal(getkey(), (30,))

    def metrics(state, data, rho):
        return dict(norm_from_w=jnp.linalg.norm(state.w), w_norm=state.w_norm, w0=state.w[0],
                    logit_err=jnp.max(jnp.abs(state.logits - data.X @ state.w)))

    res = fs.logreg_sweep(X, t, [0.0, 0.6], lr=0.9, steps=24, record_every=6, w0=w0, form=form, metrics_fn=metrics)
    np.testing.assert_allclose(res.metrics["w_norm"], res.metrics["norm_from_w"], rtol=RTOL)
    assert np.max(res.metrics["logit_err"]) <= 1e-12
    for r, rho in enumerate((0.0, 0.6)):
        ref = core_loop(w0, X, t, rho, 0.9, 24, 6)
        assert rel(res.metrics["w0"][r], ref[:, 0]) <= RTOL, f"{form}: w at the record steps"


def test_zero_gradient_and_zero_inputs_never_nan(getkey):
    """Huge margins (sigmoid(-z) == 0: the core's eps = 0 convention) and x = 0 rows."""
    X, t, noisy = problem(getkey(), n=12, d=6)
    X = X.at[0].set(0.0)
    w_star = 2000.0 * jnp.linalg.lstsq(X, t)[0]  # margins of several hundred on most rows
    for form in ("primal", "dual"):
        res = fs.logreg_sweep(X, t, [0.0, 5.0], lr=1.0, steps=6, record_every=3, w0=w_star, noisy=noisy, form=form)
        assert np.all(np.isfinite(res.w))
        for r, rho in enumerate((0.0, 5.0)):
            ref = core_loop(w_star, X, t, rho, 1.0, 6, 3)
            assert rel(res.w[r], ref[-1]) <= RTOL, f"{form}: saturated margins vs the core"


def test_float32(getkey):
    X, t, noisy = problem(getkey())
    a = fs.logreg_sweep(X, t, [0.0, 0.3], lr=0.5, steps=20, record_every=5, noisy=noisy, dtype="float32")
    b = fs.logreg_sweep(X, t, [0.0, 0.3], lr=0.5, steps=20, record_every=5, noisy=noisy, dtype="float64")
    assert a.w.dtype == np.float32 and a.metrics["loss"].dtype == np.float32
    np.testing.assert_allclose(a.w, b.w, rtol=1e-4, atol=1e-5)


def test_method_rho_grid():
    rho, labels = fs.method_rho_grid(("gd", "one_sam"), [0.1, 0.2])
    np.testing.assert_array_equal(rho, [0.0, 0.1, 0.2])
    assert labels == [("gd", 0.0), ("one_sam", 0.1), ("one_sam", 0.2)]
    with pytest.raises(ValueError, match="methods"):
        fs.method_rho_grid(("nsam",), [0.1])


def test_cost_model():
    assert fs.flops_per_step(500, 2000, 32, 10, "primal") == 4 * 500 * 2000 * 32 + 2 * 2000 * 32
    assert fs.bytes_per_step(500, 2000, 1, 10, 4, "primal") == (2 * 500 * 2000 + 3 * 2000) * 4
    assert fs.choose_form(500, 2000, 10) == "dual" and fs.choose_form(5000, 100, 10) == "primal"
    with pytest.raises(ValueError, match="form"):
        fs.flops_per_step(1, 1, 1, 1, "other")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rho=[-0.1]), "rho"),
        (dict(rho=[[0.1]]), "rho"),
        (dict(lr=0.0), "lr"),
        (dict(lr=[0.1, 0.2]), "lr"),
        (dict(steps=0), "steps"),
        (dict(steps=25), "multiple of record_every"),
        (dict(record_every=0), "record_every"),
        (dict(form="fastest"), "form"),
        (dict(shard="both"), "shard"),
        (dict(seed_block=0), "seed_block"),
        (dict(w0=np.zeros(3)), "w0"),
        (dict(noisy=np.zeros(24)), "noisy"),
        (dict(noisy=np.zeros(5, bool)), "noisy"),
        (dict(X_test=np.zeros((3, 16))), "together"),
        (dict(X_test=np.zeros((3, 15)), t_test=np.ones(3)), "X_test"),
        (dict(dtype="float16"), "dtype"),
        (dict(metrics_fn=3), "metrics_fn"),
    ],
)
def test_bad_input_is_refused(kwargs, match, getkey):
    X, t, _ = problem(getkey())
    args = dict(rho=[0.1], lr=0.1, steps=20, record_every=10)
    args.update(kwargs)
    rho = args.pop("rho")
    with pytest.raises(ValueError, match=match):
        fs.plan_sweep(X, t, rho, **args)


def test_bad_data_is_refused(getkey):
    X, t, _ = problem(getkey())
    with pytest.raises(ValueError, match="X"):
        fs.plan_sweep(X.at[0, 0].set(jnp.nan), t, 0.1, lr=0.1, steps=1, record_every=1)
    with pytest.raises(ValueError, match="t"):
        fs.plan_sweep(X, t.at[0].set(0.5), 0.1, lr=0.1, steps=1, record_every=1)
    with pytest.raises(ValueError, match="t"):
        fs.plan_sweep(X, t[:5], 0.1, lr=0.1, steps=1, record_every=1)
    with pytest.raises(ValueError, match="X"):
        fs.plan_sweep(X[0], t, 0.1, lr=0.1, steps=1, record_every=1)


def test_shard_run_axis_one_device_and_padding(getkey):
    X = jax.random.normal(getkey(), (6, 3))
    rhos = jnp.arange(5.0)

    def per_run(X, r):
        return dict(a=X.sum(0) * r, b=jnp.stack([r, r]))

    plain = jax.vmap(per_run, in_axes=(None, 0))(X, rhos)
    sharded = fs.shard_run_axis(jax.vmap(per_run, in_axes=(None, 0)), in_axes=(None, 0))(X, rhos)
    for k in plain:
        np.testing.assert_array_equal(sharded[k], plain[k])
    # out_axes per output, the split axis elsewhere than 0
    fn = fs.shard_run_axis(lambda A: (A * 2, A.sum(0)), in_axes=1, out_axes=(1, 0))
    A = jnp.arange(12.0).reshape(3, 4)
    a, b = fn(A)
    np.testing.assert_array_equal(a, A * 2)
    np.testing.assert_array_equal(b, A.sum(0))
    with pytest.raises(ValueError, match="common length"):
        fs.shard_run_axis(lambda a, b: a + b)(jnp.zeros(3), jnp.zeros(4))
    with pytest.raises(ValueError, match="in_axes"):
        fs.shard_run_axis(lambda a: a, in_axes=(0, 0))(jnp.zeros(3))


SHARD_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from linsam import fastsweep as fs
    assert len(jax.devices()) == 4, jax.devices()
    one = [jax.devices()[0]]
    key = jax.random.PRNGKey(0)
    worst = 0.0
    def cmp(a, b):
        global worst
        for k in a.metrics:
            ok = np.isfinite(b.metrics[k])
            assert np.array_equal(np.isfinite(a.metrics[k]), ok), k
            worst = max(worst, float(np.max(np.abs(a.metrics[k][ok] - b.metrics[k][ok]), initial=0)))
        worst = max(worst, float(np.max(np.abs(a.w - b.w)) / np.max(np.abs(b.w))))
    # (a) shared data: the run axis (R = 6, padded to 8) split over 4 devices
    X = jax.random.normal(key, (30, 20)) / 4; t = jnp.sign(jax.random.normal(key, (30,)))
    noisy = np.arange(30) % 4 == 0
    for form in ("primal", "dual"):
        kw = dict(lr=0.5, steps=20, record_every=5, noisy=noisy, form=form)
        rho = np.linspace(0, 1, 6)
        a = fs.logreg_sweep(X, t, rho, **kw)
        b = fs.logreg_sweep(X, t, rho, devices=one, **kw)
        assert a.num_devices == 4 and a.shard_axis == "run" and b.num_devices == 1
        cmp(a, b)
    # (b) one dataset per seed: the seed axis (S = 5, padded to 8) split over 4 devices
    Xs = jax.random.normal(key, (5, 30, 20)) / 4; ts = jnp.sign(jax.random.normal(key, (5, 30)))
    for form in ("primal", "dual"):
        kw = dict(lr=0.5, steps=20, record_every=5, noisy=np.tile(noisy, (5, 1)), form=form)
        plan = fs.plan_sweep(Xs, ts, [0.0, 0.4], **kw)
        W, _ = plan.run()
        assert len(W.sharding.device_set) == 4, W.sharding
        a = plan.result()
        b = fs.logreg_sweep(Xs, ts, [0.0, 0.4], devices=one, **kw)
        assert a.shard_axis == "seed"
        cmp(a, b)
        if form == "primal":
            c = fs.logreg_sweep(Xs, ts, [0.0, 0.4], shard="run", **kw)   # runs split, data replicated
            cmp(c, b)
    # the generic helper on a vmapped function with the seed axis in position 2 of the output
    f = jax.vmap(lambda k, r: jnp.stack([jax.random.normal(k, (3,)) * rr for rr in r]), in_axes=(0, None))
    g = lambda keys, r: jnp.moveaxis(f(keys, r), 0, 2)  # (rho, 3, seed)
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(7))
    r = jnp.array([1.0, 2.0])
    np.testing.assert_array_equal(fs.shard_run_axis(g, in_axes=(0, None), out_axes=2)(keys, r), g(keys, r))
    print("WORST", worst)
    """
)


def test_sharding_over_four_host_devices_matches_one_device(tmp_path):
    """XLA_FLAGS=--xla_force_host_platform_device_count=4: same results as one device.

    Each device runs a smaller batch, so a GEMM may sum in another order: float64 results
    agree to rounding (observed ~1e-15), asserted at the exact tier rtol 1e-10."""
    script = tmp_path / "shard_check.py"
    script.write_text(SHARD_SCRIPT)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    worst = float(proc.stdout.split("WORST")[1])
    assert worst <= RTOL, f"4 devices vs 1 device differ by {worst}"
