r"""F7. Random versus structured label noise: 1-SAM's validation-selected gain over GD for each noise type.

The documented linear regime (random initialisation) with the noise model swapped
(:class:`linsam.data.NoiseSpec`): symmetric (exactly floor(pn) flips), Bernoulli(p) per example,
class-conditional (+1 and -1 flipped at different rates), boundary (flips concentrated near
the decision boundary, :func:`linsam.data.boundary_noise`) and subgroup (flips concentrated in
the subgroup :math:`x_j > 0`). Per seed, 1-SAM's test accuracy at its validation-selected step
minus GD's (paired; the validation labels carry the same noise model, :mod:`linsam.selection`),
mean over seeds with the Student-t 95% CI, for each rho; the headline rho is drawn solid.
"""

from __future__ import annotations

import numpy as np

from figures._style import new_figure, rho_colors
from linsam.stats import mean_ci
from linsam import selection

ID = "F7"
NAME = "noise_types"
TITLE = "1-SAM's validation-selected gain over GD under random and structured label noise"


def compute(ctx, cfg: dict) -> dict:
    from linsam.data import NoiseSpec

    base = ctx.sweep_config(cfg["sweep"])
    types, gains, rates, titles = [], [], [], []
    for name, spec in cfg["noise_types"].items():
        spec = dict(spec)
        title = spec.pop("title", name)
        noise = NoiseSpec(**spec)
        cfg_t = base if noise == base.noise else base.replace(noise=noise, name=f"{base.name}_{name}")
        res = ctx.sweep(cfg_t, keep_params=cfg_t is base)
        pk = selection.early_stop(res).selected
        g = pk[res.index("rule", "one_sam")] - pk[res.index("rule", "gd")]  # (rho, seed)
        types.append(name)
        titles.append(title)
        gains.append(g)
        rates.append(float(np.mean(res.noise_rate)))
    return dict(types=types, titles=titles, rhos=np.asarray(base.rhos, float), gains=np.stack(gains), rates=rates,
                headline_rho=float(cfg["headline_rho"]), seeds=base.num_seeds)


def table(data: dict) -> dict:
    """``{type: {rho: (mean, low, high)}}`` of the gains."""
    return {t: {f"{r:g}": tuple(mean_ci(data["gains"][i, j])[:3]) for j, r in enumerate(data["rhos"]) if r != 0}
            for i, t in enumerate(data["types"])}


def draw(data: dict, cfg: dict):
    fig, axes = new_figure(1, 1, width=6.4, height=4.0)
    ax = axes[0, 0]
    rhos = [r for r in data["rhos"] if r != 0]
    cols = [c for r, c in zip(data["rhos"], rho_colors(data["rhos"])) if r != 0]
    tab = table(data)
    width = 0.8 / max(len(rhos), 1)
    x = np.arange(len(data["types"]))
    for k, (r, col) in enumerate(zip(rhos, cols)):
        est = np.array([tab[t][f"{r:g}"] for t in data["types"]])
        off = (k - (len(rhos) - 1) / 2) * width
        head = np.isclose(r, data["headline_rho"])
        ax.errorbar(x + off, 100 * est[:, 0], yerr=100 * np.abs(est[:, 1:].T - est[:, 0]), fmt="o" if head else "s",
                    color=col, ms=6 if head else 4, mfc=col if head else "white", capsize=3, lw=1.4 if head else 0.9,
                    label=f"rho = {r:g}" + (" (headline)" if head else ""))
    ax.axhline(0, color="0.3", lw=0.9)
    ax.set_xticks(x, [f"{t}\n(realised {100 * q:.0f}%)" for t, q in zip(data["titles"], data["rates"])], fontsize=7)
    ax.set_ylabel("1-SAM minus GD, validation-selected test accuracy (pp)")
    ax.set_title(f"Validation-selected gain by noise type ({data['seeds']} seeds, mean with 95% CI)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=len(rhos), fontsize=7, frameon=False)
    return fig


def caption(data: dict, cfg: dict) -> str:
    tab = table(data)
    h = f"{data['headline_rho']:g}"
    parts = [f"{t} {100 * tab[t][h][0]:+.1f} pp [{100 * tab[t][h][1]:.1f}, {100 * tab[t][h][2]:.1f}]" for t in data["types"]]
    return (f"F7. 1-SAM's gain over GD in test accuracy at the validation-selected step (paired over seeds, 95% CI) for random and structured label "
            f"noise, linear model, random initialisation; at rho = {h}: " + "; ".join(parts) + ".")


def summary(data: dict) -> dict:
    return {t: {r: list(v) for r, v in d.items()} for t, d in table(data).items()}
