r"""F3. Linear model: the clean/noisy gradient-norm ratio against step, over the rho grid.

For 1-SAM with radius rho (rho = 0: GD), the ratio of the mean norm of the gradient that
enters the update, clean over noisy examples:
:math:`\mathrm{mean}_{\rm clean}\|\nabla\ell_i(w_k+\epsilon_i)\| / \mathrm{mean}_{\rm noisy}\|\nabla\ell_i(w_k+\epsilon_i)\|`.

Lines (predicted from the state's margins): the Lemma 3.1 prediction
:math:`\|\nabla\ell_i(w+\epsilon_i)\| = \sigma(-z_i + \rho\|x_i\|)\|x_i\|`
(:func:`linsam.theory.clean_noisy_grad_ratio` on the margins :func:`linsam.theory.logreg_margins`
of the recorded weights), mean over seeds with a 95% band. Markers (measured): the same ratio from per-example gradients computed by
``jax.grad`` at :math:`w_k` and at the 1-SAM point (:mod:`reproduction.measure`), on the
recorded parameters, mean over seeds. Larger rho: slower decay (claim C3).

Dashed (predicted a priori, from the config alone): the same ratio from
:func:`linsam.theory.predict_curves` ``(res.config, "one_sam", rho)``, its
``sam_grad_norm_ratio`` :math:`\mathbb E[\sigma(-z+\rho\|x\|)\|x\|\mid\mathrm{clean}] /
\mathbb E[\sigma(-z+\rho\|x\|)\|x\|\mid\mathrm{noisy}]` (the ratio of group means, which the
lines compute per seed; ``grad_norm_ratio`` at rho = 0), with the ``predict`` settings' options.
Late in training both group means are small and the DMFT's Monte Carlo estimate of their
ratio is noisy (docs/theory.md).
"""

from __future__ import annotations

import jax
import matplotlib.patheffects as pe
import numpy as np

from figures import predicted
from figures._style import mean_band, new_figure, rho_colors, step_axis
from linsam import logreg, theory
from reproduction.measure import clean_noisy_ratio, sam_grad_norms_autodiff

ID = "F3"
NAME = "grad_ratio"
TITLE = "Linear model: clean/noisy gradient-norm ratio decays more slowly for larger rho"

_HALO = [pe.Stroke(linewidth=2.6, foreground="white", alpha=0.8), pe.Normal()]  # dashes readable over the band


@jax.jit
def _ratios_kernel(P, X, t, mask, rho):
    def one(w, X, t, mask):
        return clean_noisy_ratio(sam_grad_norms_autodiff(logreg.MODEL, w, X, t, rho), mask)

    return jax.vmap(jax.vmap(one, in_axes=(0, None, None, None)), in_axes=(0, 0, 0, 0))(P, X, t, mask)


def _autodiff_ratios(P, X, t, mask, rho):
    """Measured ratio for parameters ``P`` (seed, K, d) on each seed's data: (seed, K)."""
    return np.asarray(_ratios_kernel(P, X, t, mask, rho))


def compute(ctx, cfg: dict) -> dict:
    import jax.numpy as jnp

    res = ctx.sweep(cfg["sweep"], keep_params=True)
    X, t, mask = ctx.sweep_data(res)
    sam = res.index("rule", "one_sam")
    steps = np.asarray(res.axes["step"])
    idx = [int(np.flatnonzero(steps == s)[0]) for s in cfg["marker_steps"] if np.any(steps == s)]
    rhos = np.asarray(res.axes["rho"], float)
    xnorm = jnp.linalg.norm(X, axis=-1)  # (seed, n)
    lines, markers = [], []
    for j, rho in enumerate(rhos):
        W = jnp.asarray(res.params[sam, j])  # (seed, T, d): the recorded weights
        lines.append(np.stack([np.asarray(theory.clean_noisy_grad_ratio(theory.logreg_margins(W[s], X[s], t[s]),
                                                                         xnorm[s], mask[s], float(rho)))
                               for s in range(W.shape[0])]))
        markers.append(_autodiff_ratios(W[:, idx], X, t, mask, jnp.asarray(rho, W.dtype)))
    lines, markers = np.stack(lines), np.stack(markers)  # (rho, seed, T) and (rho, seed, K)
    gap = float(np.nanmax(np.abs(markers - lines[:, :, idx]) / np.abs(lines[:, :, idx])))
    opts = cfg.get("predict", {})
    pred = np.stack([np.asarray(predicted(res.config, "one_sam", float(r), opts)["sam_grad_norm_ratio"], float)
                     for r in rhos])  # (rho, T): a priori, from the config alone
    return dict(steps=steps, rhos=rhos, lines=lines, marker_steps=steps[idx], markers=markers, max_rel_gap=gap,
                predicted=pred, predict=dict(opts), seeds=res.config.num_seeds, name=res.config.name)


def draw(data: dict, cfg: dict):
    fig, axes = new_figure(1, 1, width=5.8, height=4.0)
    ax = axes[0, 0]
    cols = rho_colors(data["rhos"])
    for j, r in enumerate(data["rhos"]):
        lab = "GD (rho = 0)" if r == 0 else f"1-SAM, rho = {r:g}"
        mean_band(ax, data["steps"], data["lines"][j], color=cols[j], label=f"{lab}: predicted from margins")
        ax.plot(data["steps"], data["predicted"][j], color=cols[j], ls=(0, (4, 2)), lw=1.3, zorder=4,
                path_effects=_HALO)
        ax.plot(data["marker_steps"], np.nanmean(data["markers"][j], axis=0), "o", color=cols[j], ms=5, mfc="white",
                mew=1.2, zorder=6)
    ax.plot([], [], "o", color="0.2", mfc="white", mew=1.2, label="measured by autodiff (markers)")
    ax.plot([], [], color="0.2", ls=(0, (4, 2)), lw=1.3, label="a-priori prediction (DMFT, dashed)")
    step_axis(ax, data["steps"], 5)
    ax.set_ylabel(r"$\mathrm{mean}_{\rm clean}\,\|\nabla\ell_i(w+\epsilon_i)\|\ /\ "
                  r"\mathrm{mean}_{\rm noisy}\,\|\nabla\ell_i(w+\epsilon_i)\|$")
    ax.set_title(f"Clean/noisy gradient-norm ratio ({data['seeds']} seeds, mean with 95% band)")
    ax.legend(loc="upper right", fontsize=7)
    return fig


def caption(data: dict, cfg: dict) -> str:
    k = min(len(data["steps"]) - 1, int(np.searchsorted(data["steps"], cfg.get("caption_step", 10))))
    vals = np.nanmean(data["lines"][:, :, k], axis=1)
    pred = data["predicted"][:, k]
    how = ", ".join(f"{kk} = {v}" for kk, v in sorted((data.get("predict") or {}).items())) or "default options"
    return (f"F3. Ratio of the mean per-example gradient norm (at the 1-SAM point), clean over noisy examples, "
            f"against step; lines predicted from the state's margins (closed form), markers measured by autodiff "
            f"(largest relative gap {data['max_rel_gap']:.1e}), dashed the a-priori DMFT prediction from the config "
            f"alone (linsam.theory.predict_curves, {how}). At step {data['steps'][k]} the ratio is "
            + ", ".join(f"{v:.2f} (rho = {r:g}; predicted {q:.2f})" for r, v, q in zip(data["rhos"], vals, pred))
            + ": it decays more slowly for larger rho.")


def summary(data: dict) -> dict:
    return {"max_rel_gap": data["max_rel_gap"]}

