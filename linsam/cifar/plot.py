"""Figure of the CIFAR-10 runs: the figure only draws numbers already in the results dict."""

from __future__ import annotations

from pathlib import Path

#: Per-method colours, shared with the toy figures' convention (SGD grey, 1-SAM red, ...).
COLORS = {"gd": "0.35", "nsam": "tab:purple", "one_sam": "tab:red", "lsam": "tab:orange",
          "jsam": "tab:blue", "jreg": "tab:cyan", "jreg_fixed": "tab:green"}
LABELS = {"gd": "SGD", "nsam": "n-SAM", "one_sam": "1-SAM", "lsam": "L-SAM", "jsam": "J-SAM",
          "jreg": "J-reg", "jreg_fixed": "regulariser (fixed)"}


def plot_curves(agg: dict, path: str | Path | None = None):
    """Test accuracy, train accuracy on the clean and on the noisy subset (fit to the noisy
    labels), last-layer weight norm and mean penultimate activation norm against epoch.

    ``agg``: the aggregate results dict (:func:`linsam.cifar.train.aggregate`). Saves to
    ``path`` when given (atomically: a reader never sees half a PNG); returns the matplotlib
    figure. Raises ``ImportError`` naming matplotlib when it is missing; the driver treats any
    failure here as a warning (:func:`linsam.cifar.train.draw_figure`).
    """
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(f"the CIFAR figure needs matplotlib ({err})") from err

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    (a_test, a_train), (a_w, a_phi) = axes
    for m, r in agg.get("methods", {}).items():
        ep = r.get("epochs") or []
        if not ep:
            continue
        x = [e["epoch"] for e in ep]
        c, lab = COLORS.get(m, None), LABELS.get(m, m)
        a_test.plot(x, [e["test_acc"] for e in ep], color=c, label=lab)
        if r.get("peak_epoch") is not None:
            a_test.plot([r["peak_epoch"]], [r["peak_test_acc"]], "o", color=c, ms=4)
        a_train.plot(x, [e["train_acc_clean"] for e in ep], color=c, label=f"{lab} clean")
        a_train.plot(x, [e["train_acc_noisy"] for e in ep], color=c, ls="--", label=f"{lab} noisy (fit)")
        a_w.plot(x, [e["last_layer_norm"] for e in ep], color=c, label=lab)
        a_phi.plot(x, [e["feature_norm"] for e in ep], color=c, label=lab)
    a_test.set(title="test accuracy (dot: peak)", xlabel="epoch", ylabel="accuracy")
    a_train.set(title="train acc.: clean subset (solid); noisy subset, fit to noisy label (dashed)",
                xlabel="epoch", ylabel="accuracy")
    a_w.set(title="last-layer weight norm", xlabel="epoch")
    a_phi.set(title="mean penultimate activation norm", xlabel="epoch")
    for a in axes.ravel():
        a.grid(alpha=0.3)
        if a.lines:
            a.legend(fontsize=7)
    a_train.title.set_fontsize(8.5)
    return _save(fig, path)


def plot_seed_curves(agg: dict, path: str | Path | None = None):
    """Curves of a several-seed run (``linsam.cifar.results/1+seeds``, :func:`linsam.cifar.train.aggregate_seeds`):
    test accuracy against epoch per method (mean over seeds, band: min to max over seeds, dot:
    the mean peak), and train accuracy on the clean subset (solid) and on the noisy subset
    against the noisy labels (dashed: memorisation), means over seeds.

    Epochs are averaged only where every seed reached them. Saves atomically to ``path`` when
    given; returns the figure. Raises ``ImportError`` naming matplotlib when it is missing.
    """
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(f"the CIFAR figure needs matplotlib ({err})") from err

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (a_test, a_train) = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    n_seeds = 0
    for m, r in agg.get("methods", {}).items():
        runs = [s["curves"] for s in (r.get("seeds") or {}).values() if s.get("curves", {}).get("epoch")]
        if not runs:
            continue
        n_seeds = max(n_seeds, len(runs))
        k = min(len(c["epoch"]) for c in runs)
        x = runs[0]["epoch"][:k]
        curve = lambda key: np.asarray([c[key][:k] for c in runs], float)  # noqa: E731
        c, lab = COLORS.get(m, None), LABELS.get(m, m)
        test = curve("test_acc")
        a_test.plot(x, test.mean(0), color=c, label=lab)
        a_test.fill_between(x, test.min(0), test.max(0), color=c, alpha=0.18, lw=0)
        i = int(np.argmax(test.mean(0)))
        a_test.plot([x[i]], [test.mean(0)[i]], "o", color=c, ms=4)
        a_train.plot(x, curve("train_acc_clean").mean(0), color=c, label=f"{lab} clean")
        a_train.plot(x, curve("train_acc_noisy").mean(0), color=c, ls="--", label=f"{lab} noisy (fit)")
    a_test.set(title=f"test accuracy (all test images; mean over {n_seeds} seeds, band min-max, dot: peak of the mean)",
               xlabel="epoch", ylabel="accuracy")
    a_train.set(title="train accuracy: clean subset (solid); noisy subset vs its noisy label (dashed)",
                xlabel="epoch", ylabel="accuracy")
    for a in (a_test, a_train):
        a.grid(alpha=0.3)
        a.title.set_fontsize(9)
        if a.lines:
            a.legend(fontsize=7, ncol=2 if a is a_train else 1)
    return _save(fig, path)


def _save(fig, path):
    """Write ``fig`` as a PNG to ``path`` atomically and close it (no-op for ``path`` None)."""
    if path is not None:
        import matplotlib.pyplot as plt

        from linsam._src.atomic import atomic_path

        try:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=120, format="png")
        finally:
            plt.close(fig)
    return fig


def plot_study(rep: dict, path: str | Path | None = None):
    """The CPU study (``linsam cifar-study``, :mod:`linsam.cifar.study`): one panel per depth with
    every report row's validation-selected test accuracy (mean, 95% CI over the report seeds; grey
    tick: the oracle peak), tuned SGD's level dashed; a last panel with the gains over SGD of
    1-SAM, J-SAM, L-SAM and the fixed regulariser, ours (per depth, with CIs) beside the paper's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    depths = list(rep["depths"])
    fig, axes = plt.subplots(1, len(depths) + 1, figsize=(4.6 * (len(depths) + 1), 4.2))
    for ax, d in zip(axes, depths):
        rows = rep["depths"][d]["rows"]
        names = list(rows)
        for i, k in enumerate(names):
            s = rows[k]["selected"]
            lo, hi = s.get("lo"), s.get("hi")
            err = None if lo is None or hi is None else [[100 * (s["mean"] - lo)], [100 * (hi - s["mean"])]]
            col = "C3" if k == "one_sam" else "0.35" if k.startswith("gd") else "C0"
            ax.errorbar(i, 100 * s["mean"], yerr=err, fmt="o", color=col, capsize=3, ms=5)
            ax.plot(i + 0.25, 100 * rows[k]["oracle"]["mean"], "_", color="0.5", ms=7)
        ax.axhline(100 * rows["gd"]["selected"]["mean"], color="0.35", ls="--", lw=0.8)
        ax.set_xticks(range(len(names)), [rows[k]["label"] for k in names], rotation=60, ha="right", fontsize=7)
        ax.set_title(f"MLP, {d} hidden layer(s): validation-selected test acc.", fontsize=9)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    ax = axes[-1]
    show = [m for m in ("one_sam", "jsam", "lsam", "jreg_fixed")]
    width = 0.8 / (len(depths) + 1)
    pg = rep.get("paper_gains") or {}
    for j, d in enumerate(depths):
        rows = rep["depths"][d]["rows"]
        for i, m in enumerate(show):
            g = (rows.get(m) or {}).get("gain_over_tuned_sgd")
            if not g or g.get("mean") is None:
                continue
            lo, hi = g.get("lo"), g.get("hi")
            err = None if lo is None or hi is None else [[100 * (g["mean"] - lo)], [100 * (hi - g["mean"])]]
            ax.bar(i + j * width, 100 * g["mean"], width, yerr=err, color=f"C{j}", capsize=2,
                   label=f"ours, depth {d}" if i == 0 else None)
    ax.bar(np.arange(len(show)) + len(depths) * width, [pg.get(m, np.nan) for m in show], width, color="0.6",
           label="paper (ResNet-18, secondary source)")
    ax.axhline(0, color="0.2", lw=0.6)
    ax.set_xticks(np.arange(len(show)) + width * len(depths) / 2, ["1-SAM", "J-SAM", "L-SAM", "reg. (fixed)"],
                  fontsize=8)
    ax.set_ylabel("gain over SGD (points)")
    ax.set_title("gain over SGD: ours vs the paper", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
