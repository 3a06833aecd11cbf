"""``linsam demo``: 1-SAM versus GD per-example weights on a small noisy problem (Lemma 3.1).

JAX is imported when the command runs, not when the parser is built (``linsam --help`` and the
early signal handling of :func:`linsam.cli.main` stay light)."""

from __future__ import annotations

import argparse


def demo_problem(seed: int = 0, n: int = 12, d: int = 5, noise: float = 0.25):
    """A small linearly separable Gaussian problem with a fraction of labels flipped."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from linsam._src import validate

    validate.check_noise_rate(noise, "noise")
    key = jax.random.PRNGKey(seed)
    k_x, k_w, k_flip = jax.random.split(key, 3)
    mu = jnp.zeros(d).at[0].set(2.0)
    clean = jnp.where(jnp.arange(n) % 2 == 0, 1.0, -1.0)
    X = clean[:, None] * mu[None, :] + jax.random.normal(k_x, (n, d))
    flips = jax.random.permutation(k_flip, n)[: int(np.floor(noise * n))]
    noisy = jnp.zeros(n, bool).at[flips].set(True)
    t = jnp.where(noisy, -clean, clean)
    w = mu / 2 + 0.1 * jax.random.normal(k_w, (d,))
    return w, X, t, noisy


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from linsam import logreg, rules

    rules.OneSAM(args.rho)  # the method value checks rho once (ValueError naming rho)
    w, X, t, noisy = demo_problem(args.seed)
    z = logreg.margins(w, X, t)
    weights = logreg.per_example_weights(w, X, t, args.rho, method="one_sam")
    grad_norm_gd = logreg.per_example_grad_norms(w, X, t)
    print(f"linsam demo: logistic regression, n={X.shape[0]}, d={X.shape[1]}, rho={args.rho}, seed={args.seed}")
    print("1-SAM reweights each example's GD gradient by sigmoid(-z + rho||x||)/sigmoid(-z) (Lemma 3.1)\n")
    print(f"{'i':>3} {'label':>6} {'margin z':>9} {'GD |grad|':>10} {'1-SAM weight':>13} {'1-SAM |grad|':>13}")
    for i in np.argsort(np.asarray(z)):
        kind = "noisy" if bool(noisy[i]) else "clean"
        print(
            f"{i:>3} {kind:>6} {float(z[i]):>9.3f} {float(grad_norm_gd[i]):>10.4f} "
            f"{float(weights[i]):>13.4f} {float(weights[i] * grad_norm_gd[i]):>13.4f}"
        )
    clean = ~np.asarray(noisy)
    g_gd = np.asarray(grad_norm_gd)
    g_sam = np.asarray(weights * grad_norm_gd)
    ratio_gd = g_gd[clean].mean() / g_gd[~clean].mean()
    ratio_sam = g_sam[clean].mean() / g_sam[~clean].mean()
    print(f"\nclean/noisy mean gradient-norm ratio: GD {ratio_gd:.4f}   1-SAM {ratio_sam:.4f}")
    print("(1-SAM up-weights high-margin, mostly clean, examples: its ratio is larger.)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="print 1-SAM vs GD per-example weights on a small problem")
    p.add_argument("--rho", type=float, default=0.5, help="SAM radius rho >= 0 (default 0.5)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    p.set_defaults(func=run)
