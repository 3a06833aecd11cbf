r"""D3. Logistic regression, n-SAM: one shared perturbation, a signed per-example weight.

n-SAM perturbs all examples along the batch gradient :math:`g = \nabla L(w)`,
:math:`\epsilon = \rho\, g/\|g\|`. For the linear model the Jacobian is still :math:`x_i`, so
n-SAM is again a per-example reweighting of SGD, now with a *signed* shift:

.. math::

    \nabla\ell_i(w + \epsilon) = \frac{\sigma(-z_i + \rho\, c_i)}{\sigma(-z_i)}\,\nabla\ell_i(w),
    \qquad c_i = -\frac{t_i\langle x_i, g\rangle}{\|g\|}
         = \frac{1}{n\|g\|}\sum_j \sigma(-z_j)\, t_i t_j\langle x_i, x_j\rangle
         = \frac{\langle\nabla\ell_i, g\rangle}{\sigma(-z_i)\,\|g\|}.

So :math:`c_i > 0` (up-weighting) iff example i's loss gradient agrees with the batch gradient,
:math:`c_i < 0` (down-weighting) iff it opposes it; by Cauchy-Schwarz :math:`|c_i| \le \|x_i\|`,
hence the n-SAM weight never exceeds the 1-SAM weight (:math:`C_i = \rho\|x_i\|`, D1), with
equality only when :math:`x_i` is parallel to :math:`g`.

Sign convention: with :math:`g = \nabla L` (the ascent direction) the shift is
:math:`-\rho\, t_i\langle x_i, g\rangle/\|g\|`; the form :math:`+\rho\, t_i\langle x_i, g\rangle/\|g\|`
is correct only for :math:`g = -\nabla L`.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import sympy as sp

from derivations._core import (
    Step, dot, label_cases, lambdify, prove_equal, provably_negative, provably_positive,
    render_claims, sigmoid, symbols_vec, timed_result,
)

NAME = "D3"
SLUG = "logreg_nsam"
TITLE = "Logistic regression, n-SAM: the shared-direction weight and whom it up-weights"
N, DIM = 2, 2


@functools.cache
def derive() -> SimpleNamespace:
    w = symbols_vec("w", DIM)
    xs = [symbols_vec(f"x^{{({i})}}", DIM) for i in range(1, N + 1)]
    ts = [sp.Symbol(f"t_{{{i}}}", real=True, nonzero=True) for i in range(1, N + 1)]
    rho = sp.Symbol("rho", positive=True)
    fs = [dot(w, x) for x in xs]
    losses = [-sp.log(sigmoid(t * f)) for t, f in zip(ts, fs)]
    zs = [t * f for t, f in zip(ts, fs)]
    L = sp.Add(*losses) / N
    g = [sp.diff(L, wj) for wj in w]
    gnorm = sp.sqrt(dot(g, g))
    eps = [rho * gj / gnorm for gj in g]
    at_eps = dict(zip(w, [wj + ej for wj, ej in zip(w, eps)]))
    grads = [[sp.diff(l, wj) for wj in w] for l in losses]
    grads_at_eps = [[sp.diff(l, wj).xreplace(at_eps) for wj in w] for l in losses]
    c = [-t * dot(x, g) / gnorm for t, x in zip(ts, xs)]
    c_gram = [
        sp.Add(*[sigmoid(-zs[j]) * ts[i] * ts[j] * dot(xs[i], xs[j]) for j in range(N)]) / (N * gnorm)
        for i in range(N)
    ]
    weights = [sigmoid(-z + rho * ci) / sigmoid(-z) for z, ci in zip(zs, c)]
    # a generic shared direction u (any vector): the reweighting does not depend on u being grad L
    u = symbols_vec("u", DIM)
    unorm = sp.sqrt(dot(u, u))
    at_u = dict(zip(w, [wj + rho * uj / unorm for wj, uj in zip(w, u)]))
    grads_at_u = [[sp.diff(l, wj).xreplace(at_u) for wj in w] for l in losses]
    weights_u = [sigmoid(-z - rho * t * dot(x, u) / unorm) / sigmoid(-z) for z, t, x in zip(zs, ts, xs)]
    # scalar symbols for the sign statements
    zsym = sp.Symbol("z", real=True)
    csym = sp.Symbol("c", real=True)
    a = sp.Symbol("a", positive=True)
    return SimpleNamespace(
        w=w, xs=xs, ts=ts, rho=rho, zs=zs, L=L, g=g, gnorm=gnorm, eps=eps, grads=grads,
        grads_at_eps=grads_at_eps, c=c, c_gram=c_gram, weights=weights, u=u, grads_at_u=grads_at_u,
        weights_u=weights_u, cases=label_cases(*ts), zsym=zsym, csym=csym, a=a,
        weight_zc=sigmoid(-zsym + rho * csym) / sigmoid(-zsym),
        direction=[sp.Add(*[ga[k] for ga in grads_at_eps]) / N for k in range(DIM)],
    )


def _lagrange_identity(d: int) -> bool:
    x = symbols_vec("x", d)
    y = symbols_vec("y", d)
    lhs = dot(x, x) * dot(y, y) - dot(x, y) ** 2
    rhs = sp.Add(*[(x[j] * y[k] - x[k] * y[j]) ** 2 for j in range(d) for k in range(j + 1, d)])
    return prove_equal(lhs, rhs)


def steps() -> list[Step]:
    s = derive()
    z, c, a, rho = s.zsym, s.csym, s.a, s.rho
    return [
        Step(r"Any shared perturbation $\epsilon = \rho\,u/\|u\|$ reweights example $i$ by "
             r"$\sigma(-z_i - \rho t_i\langle x_i, u\rangle/\|u\|)/\sigma(-z_i)$.",
             rf"gradients differentiated at $w+\epsilon$ for symbolic $u$; $n = {N}$, $d = {DIM}$, "
             r"all four label cases $t_1, t_2 = \pm 1$; differences simplify to 0",
             lambda: all(prove_equal(ga, [wt * gi for gi in gr], s.cases)
                         for ga, gr, wt in zip(s.grads_at_u, s.grads, s.weights_u))),
        Step(r"n-SAM ($u = g = \nabla L(w)$): $\nabla\ell_i(w+\epsilon) = \dfrac{\sigma(-z_i+\rho c_i)}"
             r"{\sigma(-z_i)}\nabla\ell_i(w)$ with $c_i = -t_i\langle x_i, g\rangle/\|g\|$.",
             r"$g$ from `sympy.diff` of $L = \frac1n\sum_i\ell_i$; $\nabla\ell_i$ evaluated at "
             r"$w + \rho g/\|g\|$; differences simplify to 0 in all label cases",
             lambda: all(prove_equal(ga, [wt * gi for gi in gr], s.cases)
                         for ga, gr, wt in zip(s.grads_at_eps, s.grads, s.weights))),
        Step(r"$c_i = \dfrac{1}{n\|g\|}\sum_j \sigma(-z_j)\, t_i t_j \langle x_i, x_j\rangle$: a "
             r"loss-weighted agreement of example $i$ with the (label-signed) batch.",
             r"difference simplifies to 0 in all label cases",
             lambda: prove_equal(s.c, s.c_gram, s.cases)),
        Step(r"$\langle \nabla\ell_i, g\rangle = \sigma(-z_i)\,\|g\|\,c_i$, so "
             r"$\operatorname{sign} c_i = \operatorname{sign}\langle\nabla\ell_i, \nabla L\rangle$.",
             r"difference simplifies to 0 in all label cases; $\sigma(-z_i) > 0$, $\|g\| > 0$",
             lambda: all(prove_equal(dot(gr, s.g), sigmoid(-zi) * s.gnorm * ci, s.cases)
                         for gr, zi, ci in zip(s.grads, s.zs, s.c))),
        Step(r"The weight exceeds 1 iff $c_i > 0$ and is below 1 iff $c_i < 0$: "
             r"$\sigma(-z+\rho a) - \sigma(-z) > 0 > \sigma(-z-\rho a) - \sigma(-z)$ for $a > 0$.",
             r"monotone lemma in $a$: both vanish at $a = 0$, derivatives $\pm\rho\,\sigma\sigma > 0$",
             lambda: provably_positive(sigmoid(-z + rho * a) - sigmoid(-z))
             and provably_negative(sigmoid(-z - rho * a) - sigmoid(-z))),
        Step(r"Cauchy-Schwarz, $|c_i| \le \|x_i\|$: $\|x\|^2\|y\|^2 - \langle x, y\rangle^2 = "
             r"\sum_{j<k}(x_j y_k - x_k y_j)^2 \ge 0$ (Lagrange's identity).",
             r"polynomial identity expands to 0 for $d = 2, 3, 4$",
             lambda: all(_lagrange_identity(d) for d in (2, 3, 4))),
        Step(r"n-SAM never up-weights more than 1-SAM: with $\|x_i\| = c_i + a$, $a \ge 0$, "
             r"$\sigma(-z+\rho(c+a)) - \sigma(-z+\rho c) > 0$ for $a > 0$.",
             r"monotone lemma in $a$ (vanishes at $a = 0$, derivative $\rho\,\sigma\sigma > 0$)",
             lambda: provably_positive(sigmoid(-z + rho * (c + a)) - sigmoid(-z + rho * c))),
    ]


def check():
    """Run every proof of D3; returns a :class:`derivations._core.Result`."""
    return timed_result(NAME, TITLE, steps)


def render() -> str:
    return "\n".join([
        f"# {NAME}. {TITLE}",
        "",
        r"**Setting.** As D1 (linear logit, logistic loss), but n-SAM: one perturbation for the "
        r"whole batch, $\epsilon = \rho\, g/\|g\|$ with $g = \nabla L(w) = -\frac1n\sum_j t_j\sigma(-z_j)x_j$.",
        "",
        "## Derivation",
        "",
        r"1. The Jacobian $x_i$ does not depend on $w$, so only example $i$'s margin moves: "
        r"$z_i(w+\epsilon) = z_i + \rho\, t_i\langle x_i, g\rangle/\|g\| = z_i - \rho c_i$ with",
        "",
        "$$",
        r"c_i = -\frac{t_i\langle x_i, g\rangle}{\|g\|} = \frac{1}{n\|g\|}\sum_j \sigma(-z_j)\,t_it_j\langle x_i, x_j\rangle"
        r" = \frac{\langle \nabla\ell_i, g\rangle}{\sigma(-z_i)\|g\|},",
        "$$",
        "",
        r"   and $\nabla\ell_i(w+\epsilon) = \dfrac{\sigma(-z_i+\rho c_i)}{\sigma(-z_i)}\,\nabla\ell_i(w)$: "
        r"D2's weight with the signed shift $C_i = \rho c_i$. (With $g = \nabla L$ the sign in front "
        r"of $\rho t_i\langle x_i, g\rangle$ is minus; it is plus only for the descent direction $-\nabla L$.)",
        r"2. **Whom it up-weights.** $c_i > 0$ exactly when $\langle\nabla\ell_i, \nabla L\rangle > 0$: "
        r"examples whose gradient agrees with the batch are up-weighted (and, by D2 with $C > 0$, "
        r"the more so the larger their margin); examples whose gradient opposes the batch "
        r"($t_i\langle x_i, g\rangle > 0$) get $C_i < 0$: weight below 1, decreasing in the margin. "
        r"With a clean majority the batch direction follows the clean labels, so a mislabelled point "
        r"typically has $c_i < 0$ and is *down*-weighted, a clean point up-weighted.",
        r"3. **Versus 1-SAM.** 1-SAM perturbs each example along its own gradient, "
        r"$C_i = \rho\|x_i\|$, the largest shift possible: by Cauchy-Schwarz $|c_i| \le \|x_i\|$, and "
        r"$\sigma$ is increasing, so for every example",
        "",
        "$$",
        r"\frac{\sigma(-z_i - \rho\|x_i\|)}{\sigma(-z_i)} \;\le\; w^{\text{n-SAM}}_i \;\le\; "
        r"w^{\text{1-SAM}}_i = \frac{\sigma(-z_i+\rho\|x_i\|)}{\sigma(-z_i)},",
        "$$",
        "",
        r"   with equality on the right only for $x_i \parallel g$ with $c_i > 0$. 1-SAM up-weights "
        r"*every* example (weight $> 1$, ordered by margin, D2), whether or not it agrees with the "
        r"batch; n-SAM's up-weighting depends on agreement, and in high dimension "
        r"$|c_i| \approx \|x_i\|\,|\cos\angle(x_i, g)|$ is typically much smaller than $\|x_i\|$, "
        r"so its reweighting is weaker.",
        "",
        render_claims(steps()),
        "",
        rf"**Dimension.** The reweighting identities are proved in coordinates with $n = {N}$ examples "
        rf"and $d = {DIM}$; they use only linearity of $f$ in $w$ and bilinearity of "
        r"$\langle\cdot,\cdot\rangle$, so they hold for every $n$ and $d$. Lagrange's identity is "
        r"checked for $d = 2, 3, 4$ (it holds for all $d$: both sides are sums over pairs $j<k$). "
        r"The numeric cross-check compares with `linsam.logreg.nsam` at random points.",
        "",
    ])


@functools.cache
def _numeric():
    s = derive()
    flat_x = [xij for x in s.xs for xij in x]
    return (
        lambdify((s.zsym, s.csym, s.rho), s.weight_zc),
        lambdify((s.w, flat_x, s.ts, s.rho), s.direction),
    )


def nsam_weights(w, X, t, rho):
    r"""Per-example n-SAM weights :math:`\sigma(-z_i+\rho c_i)/\sigma(-z_i)` (any n, d), with
    :math:`c_i` from the proved Gram form and the weight lambdified from SymPy."""
    w, X, t = np.asarray(w, float), np.asarray(X, float), np.asarray(t, float)
    z = t * (X @ w)
    sig = 1.0 / (1.0 + np.exp(z))  # sigma(-z)
    g = -(t * sig) @ X / X.shape[0]
    gn = np.linalg.norm(g)
    c = (t * ((X @ X.T) @ (sig * t))) / (X.shape[0] * gn) if gn > 0 else np.zeros_like(z)
    return _numeric()[0](z, c, float(rho))


def nsam_direction(w, X, t, rho):
    r"""n-SAM direction :math:`\frac1n\sum_i\nabla\ell_i(w + \rho g/\|g\|)` lambdified from the
    derivation (``n = 2``, ``d = 2`` only: the proof's coordinates)."""
    X = np.asarray(X, float)
    if X.shape != (N, DIM):
        raise ValueError(f"X must have shape ({N}, {DIM}) (the proof's coordinates), got {X.shape}")
    return np.asarray(_numeric()[1](np.asarray(w, float), X.ravel(), np.asarray(t, float), float(rho)), float)
