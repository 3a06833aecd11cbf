r"""C2: every closed-form rule equals the generic autodiff rule, for every model (float64).

For each model (logistic regression, linear softmax with K classes, 2-layer DLN), each rule
of :data:`linsam.rules.METHODS` and each problem (random shapes, margins at several scales,
several rho), compare ``linsam.rules.direction(method, model, ...)`` (the dispatch picks the
model's closed form, ``model.closed_forms``: derived in Sec. 3 / Prop. 4.1 and by derivations
D1..D7) with ``method.autodiff(model, ...)`` (``jax.grad`` through the perturbed loss) by the
relative error

.. math::  \frac{\|u_{\mathrm{closed}} - u_{\mathrm{autodiff}}\|}{\max(\|u_{\mathrm{closed}}\|, \|u_{\mathrm{autodiff}}\|)}

over the parameter pytree. An exact identity: the tolerance (``tol``, default 1e-10) is
float64 rounding, not a statistical margin. The zero-gradient convention (eps = 0 where
the gradient is 0: the DLN at v = 0, W = 0) is checked too: no NaN, both give 0.
"""

from __future__ import annotations

import math

from reproduction._result import FAILS, HOLDS, ClaimResult, ClaimSpec

SPEC = ClaimSpec(
    id="C2",
    claim="Each SAM-family rule's closed form equals autodiff, for every rule and model.",
    where="Sec. 3 (1-SAM reweighting), Prop. 4.1 (DLN J-SAM); derivations D1-D7",
    expected="max relative error <= tol (float64 rounding) over every (model, rule, problem); no NaN",
    must_hold=True,
)


def _problems(model_name, key, n, d, h, K, margin_scale):
    import jax
    import jax.numpy as jnp

    from linsam.models import DLN, DLNParams, LogReg, Softmax

    dtype = jnp.float64
    kx, kt, kp = jax.random.split(key, 3)
    X = jax.random.normal(kx, (n, d), dtype)
    if model_name == "softmax":
        t = jax.random.randint(kt, (n,), 0, K)
        W = margin_scale * jax.random.normal(kp, (K, d), dtype)
        return Softmax(K), W, X, t
    t = jnp.where(jax.random.bernoulli(kt, 0.5, (n,)), 1.0, -1.0).astype(dtype)
    if model_name == "logreg":
        return LogReg(), margin_scale * jax.random.normal(kp, (d,), dtype), X, t
    model = DLN(hidden=h)
    p = model.init(kp, d, scale=1.0, dtype=dtype)
    s = math.sqrt(margin_scale)
    return model, DLNParams(s * p.v, s * p.W), X, t


def _rel_err(a, b) -> tuple[float, bool]:
    import jax
    import numpy as np

    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    fin = all(bool(np.all(np.isfinite(np.asarray(x)))) for x in la + lb)
    diff = math.sqrt(sum(float(np.sum((np.asarray(x) - np.asarray(y)) ** 2)) for x, y in zip(la, lb)))
    na = math.sqrt(sum(float(np.sum(np.asarray(x) ** 2)) for x in la))
    nb = math.sqrt(sum(float(np.sum(np.asarray(y) ** 2)) for y in lb))
    return diff / max(na, nb, 1e-300), fin


def compare(settings: dict) -> dict:
    """Run the comparison; returns plain numbers (worst error per (model, rule), NaN flags)."""
    import jax
    import jax.numpy as jnp

    from linsam import rules
    from linsam.models import DLN, DLNParams

    models = list(settings.get("models", ["logreg", "softmax", "dln"]))
    shapes = [tuple(s) for s in settings.get("shapes", [[7, 5, 3]])]
    rhos = [float(r) for r in settings.get("rhos", [0.05, 0.7])]
    scales = [float(s) for s in settings.get("margin_scales", [1.0, 5.0])]
    K = int(settings.get("num_classes", 3))
    lam_last, lam_act = float(settings.get("lam_last", 0.3)), float(settings.get("lam_act", 0.2))
    seed = int(settings.get("seed", 0))
    worst: dict[str, float] = {}
    nonfinite: list[str] = []
    count = 0
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(seed)
        for mi, model_name in enumerate(models):
            for si, (n, d, h) in enumerate(shapes):
                for ci, scale in enumerate(scales):
                    k = jax.random.fold_in(key, 10000 * mi + 100 * si + ci)
                    model, params, X, t = _problems(model_name, k, n, d, h, K, scale)
                    for method in rules.METHODS:
                        for rho in rhos:
                            m = rules.method(method, rho=rho, lam_last=lam_last, lam_act=lam_act, ignore_extra=True)
                            a = rules.direction(m, model, params, X, t)  # the closed form
                            b = m.autodiff(model, params, X, t)
                            err, fin = _rel_err(a, b)
                            name = f"{model_name}/{method}"
                            worst[name] = max(worst.get(name, 0.0), err if fin else math.inf)
                            if not fin:
                                nonfinite.append(f"{name} n={n} d={d} rho={rho}")
                            count += 1
        # zero-gradient convention: the all-zero DLN (every per-example gradient is 0)
        zero_ok = True
        n, d, h = shapes[0]
        X = jax.random.normal(jax.random.fold_in(key, 999), (n, d), jnp.float64)
        t = jnp.where(jnp.arange(n) % 2 == 0, 1.0, -1.0)
        zero = DLNParams(jnp.zeros(h), jnp.zeros((h, d)))
        for method in rules.METHODS if "dln" in models else ():
            m = rules.method(method, rho=0.5, lam_last=lam_last, lam_act=lam_act, ignore_extra=True)
            for impl in ("closed", "autodiff"):
                u = rules.direction(m, DLN(), zero, X, t) if impl == "closed" else m.autodiff(DLN(), zero, X, t)
                leaves = [jnp.asarray(x) for x in jax.tree_util.tree_leaves(u)]
                if not all(bool(jnp.all(jnp.isfinite(x))) for x in leaves) or any(float(jnp.max(jnp.abs(x))) != 0.0
                                                                               for x in leaves):
                    zero_ok = False
                    nonfinite.append(f"dln/{method} {impl} at v=0, W=0 is not exactly 0")
    return dict(worst=worst, comparisons=count, nonfinite=nonfinite, zero_gradient_ok=zero_ok,
                models=models, methods=list(rules.METHODS), shapes=[list(s) for s in shapes], rhos=rhos)


def measure(ctx, cfg: dict) -> dict:
    return ctx.c2_measurement()


def evaluate(m: dict, cfg: dict) -> ClaimResult:
    """Pure: verdict from the worst relative errors."""
    tol = float(cfg.get("tol", 1e-10))
    worst = m["worst"]
    max_err = max(worst.values()) if worst else math.inf
    arg = max(worst, key=worst.get) if worst else "none"
    ok = bool(worst) and max_err <= tol and not m["nonfinite"] and m["zero_gradient_ok"]
    measured = (f"max rel. error {max_err:.1e} ({arg}) over {m['comparisons']} comparisons "
                f"({len(m['models'])} models x {len(m['methods'])} rules); zero-gradient convention "
                f"{'exact (0, no NaN)' if m['zero_gradient_ok'] else 'VIOLATED'}")
    if m["nonfinite"]:
        measured += f"; non-finite or wrong: {', '.join(m['nonfinite'][:3])}"
    regime = (f"float64; models {', '.join(m['models'])}; shapes (n, d, h) {m['shapes']}; rho {m['rhos']}; "
              f"tol {tol:g}")
    return ClaimResult.from_spec(
        SPEC, regime=regime, measured=measured, estimate=max_err, ci=None, verdict=HOLDS if ok else FAILS,
        expected=f"max relative error <= {tol:g} (float64 rounding) over every (model, rule, problem); no NaN",
        details=dict(m, tol=tol),
    )
