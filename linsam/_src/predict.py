r"""A-priori training curves of full-batch GD / 1-SAM for logistic regression on a Gaussian
mixture with label noise: discrete-time dynamical mean-field theory (DMFT).

Nothing here samples a training set or runs a trajectory: the inputs are the data model
(mean, covariance spectrum), the noise rate, ``n``, ``d``, the initial scale, the step size,
the number of steps and rho. The only randomness is the predictor's own Monte Carlo over
the *effective single-example process* (a fixed seed, so the prediction is deterministic).

Model
-----
Data :math:`x_i = \nu_i\tilde x_i`, :math:`\tilde x_i = t_i\mu + \Sigma^{1/2}g_i`, trained labels
:math:`y_i = s_i t_i` with :math:`s_i = -1` on the flipped examples (fraction
:math:`p = \lfloor \mathrm{rate}\,n\rfloor/n`). The norm factor :math:`\nu_i > 0` is 1 unless the
config has heterogeneous example norms (``data.norm_frac``, ``data.norm_ratio``;
:func:`linsam.data.with_example_norms`): then :math:`\nu_i = s_{\rm hi}` with probability
``norm_frac`` and :math:`s_{\rm lo}` otherwise, independent of :math:`t_i`, :math:`g_i` and the flip.
Write the margins in the unscaled example, :math:`\tilde z_i = y_i\langle w, \tilde x_i\rangle
= s_i m + u_i` with :math:`m = \langle w,\mu\rangle` and :math:`u_i = \langle \Sigma^{1/2}(y_i g_i),
w\rangle`; the model's margin is :math:`z_i = \nu_i\tilde z_i`. Full-batch GD and 1-SAM (Lemma 3.1:
1-SAM is GD with the per-example margin shift :math:`C_i = \rho\|x_i\| = \rho\,\nu_i\|\tilde x_i\|`,
:meth:`linsam.models.LogReg.margin_shift`) are

.. math::

    w_{k+1} = w_k + \frac{\eta_k}{n}\sum_i y_i x_i\,\sigma(-z_i^k + C_i)
            = w_k + \frac{\eta_k}{n}\sum_i y_i \tilde x_i\, \varphi_i(\tilde z_i^k),\qquad
    \varphi_i(\tilde z) = \nu_i\,\sigma(-\nu_i\tilde z + C_i)\quad (C_i = 0 \text{ for GD}),

the equal-norm process in :math:`\tilde x` with a per-example nonlinearity that depends only on the
example's own :math:`(s_i, \nu_i, \|\tilde x_i\|)`: the cavity argument below goes through
unchanged, the effective single example drawing its :math:`\nu` from the norm mixture,
independently of its label sign.

DMFT (cavity, proportional limit at the config's n, d)
------------------------------------------------------
*Sample side* (one example; :math:`h` a centred Gaussian process, :math:`s = \pm1` with
:math:`P(s = -1) = p`, :math:`\nu` from the norm mixture, independent of :math:`s` and :math:`h`):

.. math::

    \tilde z^k = s\,m_k + h^k + \sum_{l<k}\eta_l\,R_\theta(k,l)\,\varphi(\tilde z^l), \qquad
    \mathrm{Cov}(h^k, h^{k'}) = Q(k,k'),\qquad
    \varphi(\tilde z) = \nu\,\sigma(-\nu\tilde z + \rho\,\nu\|\tilde x\|),

with the responses :math:`R_f(k,l) = \mathbb E[\partial\varphi(\tilde z^k)/\partial h^l]` (computed
per Monte Carlo path by the chain rule through the memory term,
:math:`\varphi' = -\nu^2\sigma(-\nu\tilde z + C)\sigma(\nu\tilde z - C)`), :math:`C_f(k,l) =
\mathbb E[\varphi^k\varphi^l]` and :math:`c_k = \mathbb E[s\,\varphi^k]`; every expectation is also
over :math:`\nu`. The paths are stratified by (label sign, norm level) with the exact weights
:math:`(1-p, p)\times(1 - \mathrm{norm\_frac}, \mathrm{norm\_frac})` (the engine draws the norm
level per example, Bernoulli; the prediction is of the mean over that draw). The parameter side
does not see :math:`\nu` (it enters only through :math:`c, C_f, R_f`).

*Parameter side* (linear; one scalar process per covariance eigenvalue :math:`\lambda_j`):

.. math::

    w_{k+1,j} = w_{k,j} + \eta_k\Big[c_k\mu_j + \sqrt{\lambda_j}\,\xi^k_j
                + \lambda_j\sum_{l\le k} R_f(k,l)\,w_{l,j}\Big],\qquad
    \mathrm{Cov}(\xi^k_j, \xi^{l}_j) = C_f(k,l)/n.

With the propagator :math:`A_j(k,l) = \partial w_{k,j}/\partial w_{l,j}` (a deterministic
recursion) the second moments are closed form: with :math:`a_j(k,l) = \eta_l A_j(k,l+1)`,
:math:`b_j(k) = \sum_{l<k} a_j(k,l)c_l` and :math:`\mathbb E w_{0,j}^2 = s_0^2/d`,

.. math::

    m_k = \sum_j \mu_j^2 b_j(k),\qquad
    Q(k,k') = \sum_j \lambda_j\Big[\tfrac{s_0^2}{d}A_j(k,0)A_j(k',0) + \mu_j^2 b_j(k)b_j(k')
              + \tfrac{\lambda_j}{n}\,(a_j C_f a_j^\top)(k,k')\Big],\qquad
    R_\theta(k,l) = \frac1n\sum_j\lambda_j A_j(k,l+1).

Every quantity at step k needs only steps < k (discrete time is causal), so one forward pass
solves the equations: no fixed-point iteration. Eigenvalues are grouped (exactly for equal
ones, in narrow log bins otherwise; coordinates carrying :math:`\mu` stay single).

Outputs at a step: ``test_acc`` :math:`=\Phi(m_k/\sqrt{Q(k,k)})` (the population accuracy of
:func:`linsam.data.population_accuracy` in its two moments; a positive factor :math:`\nu` does not
change :math:`\mathrm{sign}\langle w, x\rangle`), train accuracies per group
:math:`P(z^k > 0\mid s) = P(\tilde z^k > 0\mid s)`, losses :math:`\mathbb E[\mathrm{softplus}(-\nu\tilde
z^k)\mid s]`, gradient norms :math:`\mathbb E[\sigma(-z^k)\|x\|\mid s]` (all averaged over
:math:`\nu`) with :math:`\|x\| = \nu\|\tilde x\|`, :math:`\|\tilde x\|^2 \approx \|\mu\|^2 +
\mathrm{tr}\Sigma + \sqrt{2\,\mathrm{tr}\Sigma^2}\,\zeta` (:math:`\zeta\sim N(0,1)`; the same
:math:`\|x\|` sets :math:`C = \rho\|x\|`).

Time grid. For ``steps <= max_grid`` the equations run on every GD step (exact discrete
time). Otherwise they run on a coarser grid: unit steps first, then gaps growing in
proportion to the step (``gap ~ k / resolution``). A grid step of ``g`` GD steps freezes the
sample side (``f``, its responses and correlations) over the gap and integrates the linear
parameter side's instantaneous term exactly (exponential Euler, :func:`_macro_step`): first
order in the gap, exact for ``g = 1``, stable wherever GD is. Curves are linearly interpolated
onto :func:`linsam.simulate.record_steps`.

References: C. Celentano, C. Cheng, A. Montanari, "The high-dimensional asymptotics of first
order methods with random data" (2021); F. Mignacco, F. Krzakala, P. Urbani, L. Zdeborova,
"Dynamical mean-field theory for stochastic gradient descent in Gaussian mixture
classification", NeurIPS 2020 (arXiv 2006.06098).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import solve_triangular
from scipy.special import expit, log_expit, ndtr

from linsam._src import rules
from linsam._src.models import LogReg
from linsam._src.validate import check_positive_int, check_rho
from linsam.simulate import SimConfig, record_steps

#: Noise kinds the predictor carries (label flips independent of the input).
PREDICT_NOISE_KINDS = ("none", "symmetric", "bernoulli")
#: Data kinds the predictor carries (every Gaussian mixture ``t mu + Sigma^{1/2} g``, with or without
#: heterogeneous example norms; not ``"xor"``, whose classes are not a two-mean mixture).
PREDICT_DATA_KINDS = ("isotropic", "anisotropic", "spiked", "signal_noise")
#: The metrics :func:`predict_curves` returns (each on the record steps).
PREDICTED = ("test_acc", "train_acc", "train_acc_clean", "train_acc_noisy", "loss_clean", "loss_noisy",
             "grad_norm_clean", "grad_norm_noisy", "grad_norm_ratio", "sam_grad_norm_ratio", "overlap",
             "variance")


# ----------------------------------------------------------------------------- inputs


def _kernel_kind(method) -> str:
    """``"gd"`` or ``"one_sam"``: which per-example reweighting the logreg closed form of
    ``method`` (a name or a method value) is (J-SAM, J-reg are GD; L-SAM is 1-SAM)."""
    name = method if isinstance(method, str) else getattr(method, "name", None)
    cls = rules.METHOD_CLASSES.get(name) if isinstance(name, str) else None
    forms = LogReg().closed_forms
    if cls is not None and forms.get(cls) is forms[rules.GD]:
        return "gd"
    if cls is not None and forms.get(cls) is forms[rules.OneSAM]:
        return "one_sam"
    allowed = [m for m in rules.METHODS if forms.get(rules.METHOD_CLASSES[m]) in (forms[rules.GD], forms[rules.OneSAM])]
    raise ValueError(f"method must be one of {', '.join(allowed)} (a per-example reweighting of logistic GD), "
                     f"got {method!r}")


def _check(cfg, method, rho):
    if not isinstance(cfg, SimConfig):
        raise ValueError(f"cfg must be a linsam.simulate.SimConfig, got {type(cfg).__name__}")
    cfg = cfg.validate()
    if cfg.model != "logreg":
        raise ValueError(f"model must be 'logreg' (the predictor covers the linear model only), got {cfg.model!r}")
    kind = _kernel_kind(method)
    check_rho(rho, "rho")
    if cfg.batch_size not in (0, cfg.n):
        raise ValueError(f"batch_size must be 0 or n = {cfg.n} (full batch), got {cfg.batch_size}")
    if cfg.data.kind not in PREDICT_DATA_KINDS:
        raise ValueError(f"data.kind must be one of {', '.join(PREDICT_DATA_KINDS)} (a Gaussian mixture "
                         f"x = t mu + Sigma^(1/2) g, times the example-norm factor), got {cfg.data.kind!r}")
    if cfg.noise.kind not in PREDICT_NOISE_KINDS:
        raise ValueError(f"noise.kind must be one of {', '.join(PREDICT_NOISE_KINDS)} (flips independent of the "
                         f"input), got {cfg.noise.kind!r}")
    return cfg, kind


def _norm_levels(mixture) -> tuple:
    r"""The example-norm factor's distribution ``((nu, prob), ...)`` of ``mixture``
    (:func:`linsam.data.with_example_norms`: :math:`\nu = s_{\rm hi}` with probability ``p``,
    :math:`s_{\rm lo}` otherwise); ``((1.0, 1.0),)`` without a norm mixture. Levels of zero
    probability are dropped and equal levels merged (``norm_ratio = 1``: one level, exactly 1)."""
    if getattr(mixture, "norm_mix", None) is None:
        return ((1.0, 1.0),)
    p, lo, hi = (float(v) for v in np.asarray(mixture.norm_mix, np.float64))
    if lo == hi:
        return ((lo, 1.0),)
    return tuple((nu, q) for nu, q in ((lo, 1.0 - p), (hi, p)) if q > 0)


# ----------------------------------------------------------------------------- grids


def time_grid(steps: int, *, max_grid: int = 128, resolution: int = 24) -> np.ndarray:
    r"""The DMFT's grid of GD steps ``0 = k_0 < k_1 < ... = steps``.

    Every step when ``steps <= max_grid``; else unit gaps up to ``resolution``, then
    :math:`\mathrm{gap}(k) = \max(1, \lfloor k/\mathrm{resolution}\rfloor)` (relative spacing
    ``1/resolution``), the resolution lowered until the grid has at most ``max_grid`` points.
    """
    if steps <= max_grid:
        return np.arange(steps + 1)
    res = resolution
    while True:
        ks = [0]
        while ks[-1] < steps:
            k = ks[-1]
            ks.append(min(k + max(1, k // res), steps))
        if len(ks) <= max_grid or res <= 2:
            return np.asarray(ks)
        res = max(2, int(res * 0.8))


def _groups(mu: np.ndarray, lam: np.ndarray, num_bins: int):
    """Eigenvalue groups: (lam_bar, count, sum lam, sum lam^2, sum mu^2, sum lam mu^2)."""
    keep = mu != 0
    rows = [(lam[j], 1.0, lam[j], lam[j] ** 2, mu[j] ** 2, lam[j] * mu[j] ** 2) for j in np.flatnonzero(keep)]
    rest = lam[~keep]
    if rest.size:
        pos = rest[rest > 0]
        if pos.size and pos.max() / pos.min() < 1 + 1e-9:
            labels = np.zeros(rest.size, int) if rest.min() > 0 else (rest > 0).astype(int)
        else:
            edges = np.geomspace(pos.min(), pos.max() * (1 + 1e-12), num_bins + 1) if pos.size else np.array([1.0, 2.0])
            labels = np.where(rest > 0, 1 + np.clip(np.searchsorted(edges, rest, side="right") - 1, 0, num_bins - 1), 0)
        for b in np.unique(labels):
            sel = rest[labels == b]
            s1 = sel.sum()
            rows.append((s1 / sel.size, float(sel.size), s1, float((sel**2).sum()), 0.0, 0.0))
    g = np.asarray(rows, np.float64)
    keep_rows = (g[:, 2] > 0) | (g[:, 4] > 0)  # groups that carry variance or signal
    return g[keep_rows] if np.any(keep_rows) else g[:1]


# ----------------------------------------------------------------------------- the solver


def _macro_step(x, gap, lr):
    r"""One grid step of ``gap`` GD steps for the parameter-side recursion, per group.

    With the instantaneous coefficient :math:`a = 1 + \eta\lambda R_f(k,k)` (``x = eta lam
    R_f(k,k)``) and the rest (memory and forcing) frozen over the gap, ``gap`` steps of
    :math:`w \leftarrow a w + \eta F` give :math:`w \leftarrow a^g w + \eta\,\frac{a^g-1}{a-1} F`
    (exponential Euler; stable wherever GD is, unlike one Euler step of size :math:`g\eta`).
    ``gap = 1`` is the exact GD step. Returns ``(a^g, eta (a^g - 1)/(a - 1))``.
    """
    a = 1.0 + x
    decay = np.power(a, gap)
    small = np.abs(x) < 1e-8
    geo = np.where(small, gap * (1.0 + 0.5 * (gap - 1) * x), (decay - 1.0) / np.where(small, 1.0, x))
    return decay, lr * geo


def _dmft(n, d, mu2_groups, s0, p, eta, lr, xnorm_mean, xnorm_std, rho, one_sam, num_samples, num_response, seed,
          norm_levels=((1.0, 1.0),)):
    """Run the forward DMFT on the grid with step sizes ``eta`` (T,). Returns per-grid arrays.

    ``norm_levels``: ``((nu, prob), ...)``, the example-norm factors and their probabilities
    (:func:`_norm_levels`); each (label group, norm level) stratum gets its own paths.
    """
    lam_bar, cnt, S1, S2, M2, ML = (mu2_groups[:, i] for i in range(6))
    T = eta.size + 1  # grid points 0..T-1
    rng = np.random.default_rng(seed)
    half = max(2, num_samples // 4)  # per stratum, antithetic pairs
    eps = rng.standard_normal((half, T))
    eps = np.concatenate([eps, -eps])  # (M_g, T), antithetic
    zeta = rng.standard_normal(half)
    zeta = np.concatenate([zeta, -zeta])
    M_g = eps.shape[0]
    # strata: label group (s = +1 clean, -1 flipped) x example-norm level; exact weights, and the
    # same Gaussian draws in every stratum (common random numbers)
    wts = {1.0: 1.0 - p, -1.0: p}
    strata = [(g, nu, wts[g] * q) for g in ([1.0] if p < 1 else []) + ([-1.0] if p > 0 else [])
              for nu, q in norm_levels]
    s = np.concatenate([np.full(M_g, g) for g, _, _ in strata])
    nu = np.concatenate([np.full(M_g, v) for _, v, _ in strata])  # ||x|| / ||x~|| per path
    w = np.concatenate([np.full(M_g, q / M_g) for _, _, q in strata])
    E = np.concatenate([eps] * len(strata))
    Z = np.concatenate([zeta] * len(strata))
    xnorm = np.sqrt(np.maximum(xnorm_mean**2 + xnorm_std * Z * 2 * xnorm_mean, 0.0)) if xnorm_std > 0 else \
        np.full(s.size, xnorm_mean)  # ||x~||: the unscaled example's norm
    C = rho * nu * xnorm if one_sam else np.zeros(s.size)
    M = s.size
    G = lam_bar.size

    A = np.zeros((G, T, T))  # A[g, k, l] = dw_k / dw_l
    Q = np.zeros((T, T))
    L = np.zeros((T, T))
    Rf = np.zeros((T, T))
    Cf = np.zeros((T, T))
    Rth = np.zeros((T, T))  # eta_l * R_theta(k, l), l < k
    cvec = np.zeros(T)
    m = np.zeros(T)
    F = np.zeros((M, T))
    Dz = np.zeros((M, T))
    # responses on a subset of the paths (the first `resp` of each stratum, reweighted)
    sub = np.concatenate([np.arange(i * M_g, i * M_g + min(M_g, num_response)) for i in range(len(strata))])
    w_sub = w[sub] * (M_g / min(M_g, num_response))
    J = np.zeros((sub.size, T, T), np.float32)  # J[:, k, l] = du^k / dh^l on the subset
    H = np.zeros((M, T))
    Zm = np.zeros((M, T))
    P = np.zeros((M, T))
    jitter = 1e-13

    gaps = np.rint(eta / lr).astype(np.int64)  # GD steps per grid step
    etag = np.zeros((G, T - 1))  # per-group effective step of each grid step (see _macro_step)
    for k in range(T):
        A[:, k, k] = 1.0
        if k > 0:
            # parameter side: propagator row k from rows < k (grid step k-1, `gaps[k-1]` GD steps)
            prev = k - 1
            decay, etag[:, prev] = _macro_step(lr * lam_bar * Rf[prev, prev], gaps[prev], lr)
            # A[g, k, s] = decay A[g, k-1, s] + etag lam sum_{l=s}^{k-2} Rf(k-1, l) A[g, l, s]
            contrib = np.einsum("l,gls->gs", Rf[prev, :prev], A[:, :prev, :k])
            A[:, k, :k] = decay[:, None] * A[:, prev, :k] + etag[:, prev, None] * lam_bar[:, None] * contrib
            a = A[:, k, 1:k + 1] * etag[:, :k]  # a_g(k, l) = eta_{g,l} A_g(k, l + 1), l < k
            Ak = A[:, :k + 1, 1:k + 1] * etag[:, None, :k]  # a_g(k', l) for k' <= k
            b = np.einsum("gkl,l->gk", Ak, cvec[:k])  # b_g(k') for k' <= k
            m[k] = M2 @ b[:, k]
            aC = np.einsum("gl,lj->gj", a, Cf[:k, :k])
            noise = np.einsum("gj,gkj->gk", aC, Ak)  # (a C a^T)(k, k')
            Q[k, :k + 1] = (S1[:, None] * (s0**2 / d) * A[:, k, 0][:, None] * A[:, :k + 1, 0]).sum(0) \
                + (ML[:, None] * b[:, k][:, None] * b).sum(0) + ((S2 / n)[:, None] * noise).sum(0)
            Rth[k, :k] = (S1[:, None] * a).sum(0) / n
        else:
            Q[0, 0] = float((S1 * (s0**2 / d)).sum())
        Q[:k, k] = Q[k, :k]
        # incremental Cholesky (row k), jitter against exact singularity (zero init, tiny steps)
        qk = Q[:k + 1, k] + 0.0
        qk[k] += jitter * max(np.max(np.diag(Q)[:k + 1]), 1e-30)
        if k > 0:
            L[k, :k] = solve_triangular(L[:k, :k], qk[:k], lower=True, check_finite=False)
        L[k, k] = math.sqrt(max(qk[k] - L[k, :k] @ L[k, :k], 0.0)) or math.sqrt(jitter * max(qk[k], 1e-30))
        H[:, k] = E[:, :k + 1] @ L[k, :k + 1]
        # sample side
        mem = F[:, :k] @ Rth[k, :k] if k > 0 else 0.0
        z = s * m[k] + H[:, k] + mem
        Zm[:, k] = z
        # P(z^k > 0 | the past): the innovation L[k, k] eps^k is independent of everything before
        # step k, so this conditional expectation (Rao-Blackwell) estimates the train accuracy
        # with far less Monte Carlo noise than the indicator
        base = z - L[k, k] * E[:, k]
        P[:, k] = ndtr(base / L[k, k]) if L[k, k] > 1e-12 * max(abs(base).max(), 1e-300) else (z > 0) + 0.5 * (z == 0)
        # the per-example nonlinearity in the unscaled margin z~: phi(z~) = nu sigma(-nu z~ + C)
        e = expit(-(nu * z) + C)
        f = nu * e
        F[:, k] = f
        Dz[:, k] = -(nu * nu) * e * expit(nu * z - C)  # dphi/dz~
        # response J(k, l): 1 at l = k, memory chain below
        J[:, k, k] = 1.0
        if k > 0:
            coef = (Rth[k, :k][None, :] * Dz[sub, :k]).astype(np.float32)  # (M_sub, k)
            J[:, k, :k] = np.matmul(coef[:, None, :], J[:, :k, :k])[:, 0, :]
        Rf[k, :k + 1] = (w_sub * Dz[sub, k]) @ J[:, k, :k + 1]
        Cf[k, :k + 1] = (w * f) @ F[:, :k + 1]
        Cf[:k, k] = Cf[k, :k]
        cvec[k] = (w * s) @ f
    v0 = (M2[:, None] * A[:, :, 0] ** 2).sum(0) * (s0**2 / d)  # Var <A(k,0) w0, mu> over seeds
    return dict(m=m, Q=np.diag(Q).copy(), v0=v0, z=Zm, p_correct=P, s=s, w=w, xnorm=nu * xnorm, nu=nu, C=C)


def _metrics(sol):
    # z: the unscaled margins z~ (train accuracy P(z~ > 0) = P(z > 0)); the engine's margin is nu z~
    zt, s, w, xn, C = sol["z"], sol["s"], sol["w"], sol["xnorm"], sol["C"]
    z = sol["nu"][:, None] * zt
    m, q0 = sol["m"], sol["Q"]
    q = q0 + sol["v0"]  # E over w0 of Phi((m + delta)/sqrt(Q)), delta ~ N(0, v0): Phi(m / sqrt(Q + v0))
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(q > 0, ndtr(m / np.sqrt(np.where(q > 0, q, 1.0))), np.where(m > 0, 1.0, np.where(m < 0, 0.0, 0.5)))
    out["test_acc"] = acc
    out["overlap"], out["variance"] = m, q0
    correct = sol["p_correct"]
    gn = np.exp(log_expit(-z)) * xn[:, None]
    sgn = np.exp(log_expit(-z + C[:, None])) * xn[:, None]
    loss = -log_expit(z)
    for name, g in (("clean", 1.0), ("noisy", -1.0)):
        sel = s == g
        if not np.any(sel):
            for key in ("train_acc_", "loss_", "grad_norm_", "_sgn_"):
                out[key + name] = np.full(z.shape[1], np.nan)
            continue
        ww = w[sel] / w[sel].sum()
        out["train_acc_" + name] = ww @ correct[sel]
        out["loss_" + name] = ww @ loss[sel]
        out["grad_norm_" + name] = ww @ gn[sel]
        out["_sgn_" + name] = ww @ sgn[sel]
    out["train_acc"] = w @ correct
    out["grad_norm_ratio"] = out["grad_norm_clean"] / out["grad_norm_noisy"]
    out["sam_grad_norm_ratio"] = out.pop("_sgn_clean") / out.pop("_sgn_noisy")
    return out


def predict_curves(cfg: SimConfig, method="gd", rho: float = 0.0, *, num_samples: int = 2048,
                   num_response: int = 256, max_grid: int = 128, seed: int = 0) -> dict:
    r"""A-priori curves of ``method`` at radius ``rho`` for the logreg config ``cfg``.

    From the data model and the hyper-parameters only (``n``, ``data``, ``noise.rate``,
    ``init_scale``, ``lr``, ``steps``, rho): discrete-time DMFT of the proportional limit at
    the config's ``n`` and ``d`` (module docstring), solved by one forward pass with a Monte
    Carlo of ``num_samples`` paths of the effective single-example process per norm level
    (antithetic, stratified by clean/noisy and by the example-norm level; ``seed`` fixes it).

    Args:
      cfg: a :class:`linsam.simulate.SimConfig` with ``model = "logreg"``, full batch, data
        kind in :data:`PREDICT_DATA_KINDS` (with or without heterogeneous example norms,
        ``data.norm_frac``/``data.norm_ratio``) and noise kind in :data:`PREDICT_NOISE_KINDS`.
      method: ``"gd"`` or ``"one_sam"`` (or a method value; ``jsam``/``jreg`` are GD and
        ``lsam`` is 1-SAM for the linear model).
      rho: radius >= 0 (ignored by GD-like methods).
      num_samples: Monte Carlo paths (>= 8) per example-norm level, half clean and half noisy,
        antithetic pairs (a norm mixture with two levels doubles the paths and the cost).
      num_response: paths per stratum (label group x norm level) used for the response
        functions :math:`R_f` (the :math:`O(M T^3)` part of the cost).
      max_grid: most DMFT time points (every step is used when ``steps <= max_grid``).
      seed: the predictor's own Monte Carlo seed.

    Returns:
      dict: ``"step"`` (:func:`linsam.simulate.record_steps`), and each name in
      :data:`PREDICTED` as a ``(len(step),)`` array of ``cfg.dtype``: ``test_acc``,
      ``train_acc`` (``_clean``, ``_noisy``), ``loss_clean``/``_noisy``, ``grad_norm_clean``/
      ``_noisy`` and ``grad_norm_ratio`` (:math:`\mathbb E[\sigma(-z)\|x\|]` clean / noisy),
      ``sam_grad_norm_ratio`` (the same at the 1-SAM point, :math:`\sigma(-z + \rho\|x\|)`),
      ``overlap`` :math:`\langle w_k,\mu\rangle` and ``variance`` :math:`w_k^\top\Sigma w_k`.

    >>> from linsam.data import MixtureSpec
    >>> from linsam.simulate import SimConfig
    >>> cfg = SimConfig(n=200, steps=20, lr=1.0, record_every=1, data=MixtureSpec(d=100))
    >>> out = predict_curves(cfg, "gd")
    >>> float(out["test_acc"][0])
    0.5
    """
    cfg, kind = _check(cfg, method, rho)
    check_positive_int(num_samples, "num_samples", minimum=8)
    check_positive_int(num_response, "num_response", minimum=2)
    check_positive_int(max_grid, "max_grid", minimum=8)
    rho = float(rho) if kind == "one_sam" else 0.0
    mix = cfg.data.build()
    mu = np.asarray(mix.mu, np.float64)
    lam = np.asarray(mix.scale, np.float64) ** 2
    n, d = cfg.n, cfg.data.d
    p = 0.0 if cfg.noise.kind == "none" else (
        math.floor(cfg.noise.rate * n + 1e-9) / n if cfg.noise.kind == "symmetric" else float(cfg.noise.rate))
    tr, tr2, mu2 = lam.sum(), (lam**2).sum(), (mu**2).sum()
    xnorm_mean = math.sqrt(mu2 + tr)
    xnorm_std = math.sqrt(2 * tr2) / (2 * xnorm_mean) if xnorm_mean > 0 else 0.0
    grid = time_grid(cfg.steps, max_grid=max_grid)
    eta = cfg.lr * np.diff(grid).astype(np.float64)
    groups = _groups(mu, lam, num_bins=48)
    sol = _dmft(n, d, groups, float(cfg.init_scale), p, eta, float(cfg.lr), xnorm_mean, xnorm_std, rho,
                kind == "one_sam", num_samples, num_response, seed, norm_levels=_norm_levels(mix))
    met = _metrics(sol)
    steps = record_steps(cfg)
    dt = np.dtype(cfg.dtype)
    out = {"step": steps}
    for key in PREDICTED:
        out[key] = np.interp(steps, grid, met[key]).astype(dt)
    return out
