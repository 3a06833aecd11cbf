"""Shared look of the figures: a colour-blind-safe palette, mean-with-band plotting, atomic saving.

Palette: Okabe & Ito (2008), distinguishable under the common colour-vision deficiencies.
Methods keep one colour in every figure; a rho grid uses GD's black for rho = 0 and then
blue -> green -> orange -> vermillion -> purple for increasing rho.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import linsam  # noqa: E402
from linsam._src.atomic import atomic_path  # noqa: E402
from linsam.stats import mean_ci  # noqa: E402

__all__ = ["OKABE_ITO", "METHOD_COLORS", "METHOD_LABELS", "rho_colors", "new_figure", "mean_band", "save_figure",
           "step_axis"]

OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
}

METHOD_COLORS = {
    "gd": OKABE_ITO["black"], "one_sam": OKABE_ITO["vermillion"], "lsam": OKABE_ITO["sky"],
    "jsam": OKABE_ITO["green"], "jreg": OKABE_ITO["purple"], "jreg_fixed": OKABE_ITO["orange"],
    "nsam": OKABE_ITO["blue"],
}
METHOD_LABELS = {
    "gd": "GD / SGD", "one_sam": "1-SAM", "lsam": "L-SAM (logit scale only)", "jsam": "J-SAM (Jacobian only)",
    "jreg": "J-reg (Prop. 4.1 penalty)", "jreg_fixed": "fixed regulariser (Prop. 4.1 coeff. at init)",
    "nsam": "n-SAM",
}
_RHO_SEQ = ["blue", "green", "orange", "vermillion", "purple", "sky", "yellow"]


def rho_colors(rhos) -> list[str]:
    """Colours for a rho grid: black for rho = 0 (GD), then the Okabe-Ito sequence."""
    out, k = [], 0
    for r in rhos:
        if float(r) == 0.0:
            out.append(OKABE_ITO["black"])
        else:
            out.append(OKABE_ITO[_RHO_SEQ[k % len(_RHO_SEQ)]])
            k += 1
    return out


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.2, height: float = 3.8, **kw):
    """A figure with readable defaults (font sizes, grid)."""
    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
                         "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3,
                         "savefig.dpi": 150, "pdf.fonttype": 42})
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False,
                             constrained_layout=True, **kw)
    return fig, axes


def mean_band(ax, x, Y, *, color, label=None, level: float = 0.95, lw: float = 1.6, ls: str = "-", alpha: float = 0.2,
              marker=None, markevery=None, zorder=2, clip=None):
    """Plot the mean over seeds (rows of ``Y``, shape (seed, len(x))) with a Student-t CI band
    (``clip=(lo, hi)`` keeps the band inside a quantity's range, e.g. accuracies in [0, 1]).

    Returns the mean curve.
    """
    Y = np.asarray(Y, float)
    if Y.ndim == 1:
        Y = Y[None]
    ci = mean_ci(Y, level, axis=0)
    mean = ci.mean
    ax.plot(x, mean, color=color, lw=lw, ls=ls, label=label, marker=marker, markevery=markevery, zorder=zorder)
    if Y.shape[0] > 1:
        lo, hi = (np.where(ci.n > 1, b, np.nan) for b in (ci.lo, ci.hi))  # no band from one seed
        if clip is not None:
            lo, hi = np.clip(lo, *clip), np.clip(hi, *clip)
        ax.fill_between(x, lo, hi, color=color, alpha=alpha, lw=0, zorder=zorder - 1)
    return mean


def step_axis(ax, steps, linthresh: float = 5, label: str = "step (full-batch iterations)") -> None:
    """Symmetric-log step axis (linear up to ``linthresh``, then logarithmic) with integer ticks."""
    from matplotlib.ticker import FixedLocator, NullFormatter

    top = float(np.max(steps))
    ticks = [t for t in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if t <= top * 1.001]
    if ticks[-1] < top:
        ticks.append(int(top))
    ax.set_xscale("symlog", linthresh=linthresh)
    ax.set_xlim(0, top)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"{label}; log scale above {linthresh:g}")


def _atomic_savefig(fig, path: Path, fmt: str, metadata: dict) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, metadata=metadata)


def save_figure(fig, out_dir, name: str, *, title: str, caption: str, config: dict) -> list[Path]:
    """Write ``out_dir/name.png`` and ``.pdf``, each atomically (temp file + ``os.replace``).

    Metadata: the title, the caption, ``linsam.__version__`` and the settings (JSON) that
    produced the figure, in the PNG text chunks and the PDF info dictionary.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_json = json.dumps(config, sort_keys=True, default=str)
    software = f"linsam {linsam.__version__} (matplotlib {matplotlib.__version__})"
    png_meta = {"Title": title, "Description": caption, "Software": software, "linsam-version": linsam.__version__,
                "linsam-config": cfg_json}
    pdf_meta = {"Title": title, "Subject": caption, "Creator": software, "Keywords": f"linsam-config {cfg_json}",
                "CreationDate": None}
    paths = []
    for fmt, meta in (("png", png_meta), ("pdf", pdf_meta)):
        p = out / f"{name}.{fmt}"
        _atomic_savefig(fig, p, fmt, meta)
        paths.append(p)
    plt.close(fig)
    return paths


def fmt_rho(r: float) -> str:
    return "0 (GD)" if float(r) == 0 else f"{float(r):g}"


def finite_max(a) -> float:
    a = np.asarray(a, float)
    return float(np.nanmax(a)) if np.any(np.isfinite(a)) else math.nan
