r"""D5. Two-layer deep linear network, J-SAM (Proposition 4.1): an activation/weight-norm penalty.

Model :math:`f(v, W, x) = \langle v, W x\rangle`, :math:`z = Wx`, loss
:math:`\ell = -\log\sigma(t f)`, :math:`s = \sigma(-t f)`. From these definitions:

.. math::

    \nabla_v f = z,\quad \nabla_W f = v x^\top,\quad
    J = \|\nabla_{(v,W)} f\| = \sqrt{\|z\|^2 + \|x\|^2\|v\|^2},\quad
    \epsilon = \rho\frac{\nabla\ell}{\|\nabla\ell\|} = -\frac{\rho t}{J}(z,\ v x^\top).

J-SAM keeps the logit scale :math:`-t s` at :math:`w` and takes the Jacobian at :math:`w+\epsilon`:

.. math::

    \text{J-SAM}_W = \nabla_W\ell + \frac{\rho s}{J}\, z x^\top
                   = \nabla_W\ell + \frac{\rho s}{J}\nabla_W\tfrac12\|Wx\|^2,\qquad
    \text{J-SAM}_v = \nabla_v\ell + \frac{\rho s\|x\|^2}{J}\, v
                   = \nabla_v\ell + \frac{\rho s\|x\|^2}{J}\nabla_v\tfrac12\|v\|^2,

and, exactly, :math:`\text{J-SAM} - \text{GD} = \rho\,\mathrm{sg}(s)\,\nabla_{(v,W)} J`:
J-SAM is SGD on :math:`\ell + \rho\,\mathrm{sg}(\sigma(-tf))\,\|\nabla_{(v,W)} f\|`.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import sympy as sp

from derivations._core import (
    Step, dot, label_cases, lambdify, norm, prove_equal, render_claims, sigmoid, symbols_vec,
    timed_result,
)

NAME = "D5"
SLUG = "dln_jsam"
TITLE = "Deep linear network, J-SAM (Proposition 4.1): a norm penalty on Wx and v"
H, DIM = 2, 3


@functools.cache
def derive() -> SimpleNamespace:
    v = symbols_vec("v", H)
    W = [symbols_vec(f"W_{{{i + 1}}}", DIM) for i in range(H)]  # rows of W
    flatW = [wij for row in W for wij in row]
    x = symbols_vec("x", DIM)
    t = sp.Symbol("t", real=True, nonzero=True)
    rho = sp.Symbol("rho", positive=True)
    params = list(v) + flatW
    z = [dot(row, x) for row in W]
    f = dot(v, z)
    loss = -sp.log(sigmoid(t * f))
    grad_f = [sp.diff(f, p) for p in params]
    grad_l = [sp.diff(loss, p) for p in params]
    J = norm(grad_f)
    eps = [rho * g / norm(grad_l) for g in grad_l]
    at_eps = dict(zip(params, [p + e for p, e in zip(params, eps)]))
    s = sigmoid(-t * f)
    jsam = [-t * s * gf.xreplace(at_eps) for gf in grad_f]  # logit scale at w, Jacobian at w + eps
    xn2 = dot(x, x)
    J_closed = sp.sqrt(dot(z, z) + xn2 * dot(v, v))
    zxT = [z[i] * x[j] for i in range(H) for j in range(DIM)]  # z x^T, flattened like W
    half_act = dot(z, z) / 2
    half_v = dot(v, v) / 2
    return SimpleNamespace(
        v=v, W=W, flatW=flatW, x=x, t=t, rho=rho, params=params, z=z, f=f, loss=loss, grad_f=grad_f,
        grad_l=grad_l, J=J, eps=eps, jsam=jsam, s=s, xn2=xn2, J_closed=J_closed, zxT=zxT,
        half_act=half_act, half_v=half_v, cases=label_cases(t),
        grad_J=[sp.diff(J, p) for p in params],
    )


def steps() -> list[Step]:
    d = derive()
    t, rho, s, J = d.t, d.rho, d.s, d.J_closed
    nv = len(d.v)
    jsam_v, jsam_W = d.jsam[:nv], d.jsam[nv:]
    gl_v, gl_W = d.grad_l[:nv], d.grad_l[nv:]
    return [
        Step(r"$\nabla_v f = Wx = z$, $\nabla_W f = v x^\top$, and "
             r"$J^2 = \|\nabla_{(v,W)} f\|^2 = \|z\|^2 + \|x\|^2\|v\|^2$.",
             r"`sympy.diff` of $\langle v, Wx\rangle$; differences expand to 0",
             lambda: prove_equal(d.grad_f, list(d.z) + [vi * xj for vi in d.v for xj in d.x])
             and prove_equal(dot(d.grad_f, d.grad_f), J**2)),
        Step(r"$\nabla\ell = -t\,\sigma(-tf)\,\nabla f$ and "
             r"$\epsilon = \rho\nabla\ell/\|\nabla\ell\| = -\rho\, t\,\nabla f/J$.",
             r"`sympy.diff`; differences simplify to 0 for $t = \pm 1$ (square roots reduced with $r^2 = J^2$)",
             lambda: prove_equal(d.grad_l, [-t * s * g for g in d.grad_f])
             and prove_equal(d.eps, [-rho * t * g / J for g in d.grad_f], d.cases)),
        Step(r"First layer: $\text{J-SAM}_W = -t\,\sigma(-tf)\,(v - \tfrac{\rho t}{J} z)x^\top "
             r"= \nabla_W\ell + \tfrac{\rho\,\sigma(-tf)}{J}\, z x^\top$.",
             r"Jacobian differentiated, evaluated at $w+\epsilon$; difference simplifies to 0 for $t = \pm 1$",
             lambda: prove_equal(jsam_W, [g + rho * s / J * zx for g, zx in zip(gl_W, d.zxT)], d.cases)),
        Step(r"Second layer: $\text{J-SAM}_v = -t\,\sigma(-tf)\,(z - \tfrac{\rho t\|x\|^2}{J} v) "
             r"= \nabla_v\ell + \tfrac{\rho\,\sigma(-tf)\|x\|^2}{J}\, v$.",
             r"difference simplifies to 0 for $t = \pm 1$",
             lambda: prove_equal(jsam_v, [g + rho * s * d.xn2 / J * vi for g, vi in zip(gl_v, d.v)], d.cases)),
        Step(r"The extra terms are gradients of squared norms: $z x^\top = \nabla_W\tfrac12\|Wx\|^2$, "
             r"$v = \nabla_v \tfrac12\|v\|^2$; so J-SAM $=$ GD $+\ \tfrac{\rho\,\mathrm{sg}(\sigma(-tf))}{J}"
             r"\nabla\bigl(\tfrac12\|Wx\|^2 + \tfrac12\|x\|^2\|v\|^2\bigr)$.",
             r"`sympy.diff`; differences expand to 0; combined statement simplifies to 0 for $t = \pm 1$",
             lambda: prove_equal([sp.diff(d.half_act, p) for p in d.flatW], d.zxT)
             and prove_equal([sp.diff(d.half_v, p) for p in d.v], list(d.v))
             and prove_equal(d.jsam, [g + rho * s / J * sp.diff(d.half_act + d.xn2 * d.half_v, p)
                                      for g, p in zip(d.grad_l, d.params)], d.cases)),
        Step(r"Identity: $\text{J-SAM} - \text{GD} = \rho\,\mathrm{sg}(\sigma(-tf))\,\nabla_{(v,W)}\|\nabla_{(v,W)} f\|$, "
             r"exactly (the penalty $\rho\,\mathrm{sg}(\sigma(-tf))\,J$; $\rho\sigma/J$ times the squared norms' "
             r"gradient, i.e. closer to the norm than the squared norm).",
             r"$\nabla J$ by `sympy.diff` of $\sqrt{\sum_k(\partial_k f)^2}$; difference simplifies to 0 for $t = \pm 1$",
             lambda: prove_equal([a - b for a, b in zip(d.jsam, d.grad_l)], [rho * s * gj for gj in d.grad_J], d.cases)),
        Step(r"$\nabla f = 0$ at $v = 0, W = 0$: there $\epsilon$ is undefined and the convention "
             r"$\epsilon = 0$ makes every variant equal GD ($= 0$).",
             r"substitution", lambda: prove_equal([g.xreplace({p: 0 for p in d.params}) for g in d.grad_f],
                                                  [0] * len(d.params))),
    ]


def check():
    """Run every proof of D5; returns a :class:`derivations._core.Result`."""
    return timed_result(NAME, TITLE, steps)


def render() -> str:
    return "\n".join([
        f"# {NAME}. {TITLE}",
        "",
        r"**Setting.** $f(v, W, x) = \langle v, Wx\rangle$, $W \in \mathbb R^{h\times d}$, $v \in \mathbb R^h$, "
        r"hidden activation $z = Wx$, loss $\ell = -\log\sigma(tf)$, $t = \pm 1$. J-SAM: logit scale "
        r"$-t\,\sigma(-tf)$ at $w$, Jacobian $\nabla f$ at $w + \epsilon$, with 1-SAM's per-example $\epsilon$.",
        "",
        "## Derivation",
        "",
        r"1. $\nabla_v f = z$, $\nabla_W f = v x^\top$; "
        r"$J := \|\nabla f\| = \sqrt{\|z\|^2 + \|x\|^2\|v\|^2}$ (Frobenius norm of $vx^\top$ is $\|v\|\|x\|$).",
        r"2. $\nabla\ell = -t\sigma(-tf)\nabla f$, so $\epsilon = -\frac{\rho t}{J}(z,\ vx^\top)$: "
        r"$v' = v - \frac{\rho t}{J}z$, $W' = W - \frac{\rho t}{J}vx^\top$.",
        r"3. The Jacobian at the perturbed point: $\nabla_v f(w') = W'x = z - \frac{\rho t\|x\|^2}{J}v$ "
        r"(using $(vx^\top)x = \|x\|^2 v$), $\nabla_W f(w') = v'x^\top = (v - \frac{\rho t}{J}z)x^\top$.",
        r"4. Multiply by the unperturbed logit scale $-t\sigma(-tf)$ and use $t^2 = 1$:",
        "",
        "$$",
        r"\text{J-SAM}_W = \nabla_W\ell + \frac{\rho\,\sigma(-tf)}{J}\,\underbrace{z x^\top}_{\nabla_W\frac12\|Wx\|^2},"
        r"\qquad \text{J-SAM}_v = \nabla_v\ell + \frac{\rho\,\sigma(-tf)\,\|x\|^2}{J}\,\underbrace{v}_{\nabla_v\frac12\|v\|^2}.",
        "$$",
        "",
        r"   Proposition 4.1: J-SAM is SGD plus an L2 penalty on the hidden activation $Wx$ and on "
        r"the last layer $v$, with the stop-gradient, loss-dependent weight $\rho\,\sigma(-tf)/J$ "
        r"(largest for high-loss examples; $1/J$ makes it act like a norm, not a squared norm).",
        r"5. Since $\nabla J = \frac{1}{J}\nabla\frac12 J^2 = \frac1J(\|x\|^2 v,\ z x^\top)$, the two "
        r"extra terms together are exactly $\rho\,\mathrm{sg}(\sigma(-tf))\,\nabla\|\nabla_{(v,W)}f(x)\|$. "
        r"This is `linsam.dln.jsam_penalty` (value $\frac{\rho}{n}\sum_i\mathrm{sg}(\sigma(-z_i))J_i$), "
        r"and `jreg` equals `jsam` exactly for the DLN.",
        r"6. At $v = 0, W = 0$ the gradient vanishes, $\epsilon$ is undefined, $J = 0$ and $\nabla J$ "
        r"does not exist; linsam's convention $\epsilon = 0$ there gives GD ($= 0$).",
        "",
        render_claims(steps()),
        "",
        rf"**Dimension.** Proved in coordinates for $h = {H}$, $d = {DIM}$ (general enough that "
        r"$W$ is neither square nor a vector). Every step uses only $\partial_v\langle v,Wx\rangle = Wx$, "
        r"$\partial_W\langle v,Wx\rangle = vx^\top$, $(vx^\top)x = \|x\|^2v$ and "
        r"$\|vx^\top\|_F = \|v\|\|x\|$, which hold for all $h, d$; the numeric cross-check runs "
        r"`linsam.dln` at the same shape, and the dimension-free (Gram-matrix) proof of the "
        r"perturbed logit is in D6.",
        "",
    ])


@functools.cache
def _numeric():
    d = derive()
    args = (d.v, d.flatW, d.x, d.t, d.rho)
    return {
        "jsam": lambdify(args, d.jsam),
        "gd": lambdify(args, d.grad_l),
        "J": lambdify(args, d.J),
        "extra": lambdify(args, [d.rho * d.s * g for g in d.grad_J]),
    }


def per_example(name: str, v, W, X, t, rho):
    """Derived per-example quantity ``name`` (``jsam``, ``gd``, ``J``, ``extra``), stacked over
    examples: shape (n, h + h*d) for vectors, (n,) for ``J``. Shapes as in the proof (h=2, d=3)."""
    fn = _numeric()[name]
    v, W = np.asarray(v, float), np.asarray(W, float)
    if W.shape != (H, DIM):
        raise ValueError(f"W must have shape ({H}, {DIM}) (the proof's coordinates), got {W.shape}")
    return np.array([np.asarray(fn(v, W.ravel(), xi, float(ti), float(rho)), float)
                     for xi, ti in zip(np.asarray(X, float), t)])


def split(flat):
    """Split a flat (..., h + h*d) parameter vector into (v, W) with W of shape (..., h, d)."""
    flat = np.asarray(flat)
    return flat[..., :H], flat[..., H:].reshape(flat.shape[:-1] + (H, DIM))
