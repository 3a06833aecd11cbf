r"""The a-priori prediction's error table (docs/theory.md) and its cost ratio.

``python -m bench.predict_table [--seeds 8] [--out bench/predict_table.json] [--no-cost]``

For each config of a small grid over (data kind, n, d/n, noise rate, init scale, rho): the
prediction :func:`linsam.theory.predict_curves` of GD and 1-SAM (from the config alone),
and the engine's measurement (:func:`linsam.simulate.simulate`, ``--seeds`` seeds). Reported per
(config, method): max over record steps of |predicted - measured mean| test accuracy, the
error at the early-stopped peak |max_k predicted - max_k measured mean|, the measured peak's
95% t half-width (seed noise), and the predicted vs measured peak gain of 1-SAM over GD.

Cost ratio: the time of predicting GD and 1-SAM of the default regime (n = 500, d = 2000,
3000 steps) over the time of simulating 20 seeds of the same two runs (both timed after a
warm-up call, so compilation is not counted for either).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from linsam._src.atomic import strict_json, write_text_atomic
from linsam.theory import predict_curves
from linsam.data import MixtureSpec, NoiseSpec
from linsam.simulate import SimConfig, simulate
from linsam.stats import mean_ci

#: (kind, n, d/n, noise rate, init scale, rho): small enough for < 15 min on 2 loaded cores.
GRID = (
    ("isotropic", 500, 0.5, 0.3, 10.0, 6.0),
    ("isotropic", 500, 1.0, 0.3, 10.0, 6.0),
    ("isotropic", 500, 4.0, 0.3, 10.0, 6.0),
    ("isotropic", 500, 4.0, 0.3, 10.0, 2.0),
    ("isotropic", 500, 4.0, 0.1, 10.0, 6.0),
    ("isotropic", 500, 4.0, 0.3, 0.0, 6.0),
    ("isotropic", 1000, 1.0, 0.3, 10.0, 6.0),
    ("isotropic", 200, 4.0, 0.3, 10.0, 6.0),
    ("anisotropic", 500, 1.0, 0.3, 10.0, 6.0),
    ("anisotropic", 500, 4.0, 0.3, 10.0, 6.0),
    ("anisotropic", 500, 0.5, 0.3, 10.0, 6.0),
)


def config(kind, n, ratio, rate, init, rho, *, seeds=8, steps=600) -> SimConfig:
    """The iso_rand-like regime (||x|| ~ 1, ||mu|| = 2 sigma, lr 16) at the given point."""
    d = int(round(ratio * n))
    sigma = 1.0 / math.sqrt(d)
    return SimConfig(name="predict_table", methods=("gd", "one_sam"), rhos=(float(rho),), num_seeds=seeds, n=n,
                     steps=steps, lr=16.0, init_scale=float(init), record_every=10, record_dense=100,
                     data=MixtureSpec(kind=kind, d=d, mean_norm=2 * sigma, sigma=sigma, alpha=1.0),
                     noise=NoiseSpec("symmetric", rate))


def row(cfg: SimConfig) -> dict:
    rho = float(cfg.rhos[0])
    res = simulate(cfg)
    out = dict(kind=cfg.data.kind, n=cfg.n, ratio=cfg.data.d / cfg.n, rate=cfg.noise.rate, init=cfg.init_scale,
               rho=rho, seeds=cfg.num_seeds)
    peaks = {}
    for method in ("gd", "one_sam"):
        t0 = time.perf_counter()
        pred = predict_curves(cfg, method, rho)["test_acc"].astype(float)
        t_pred = time.perf_counter() - t0
        per_seed = np.asarray(res.sel("test_acc", rule=method, rho=rho), float)  # (seed, step)
        meas = per_seed.mean(0)
        ci = mean_ci(per_seed.max(1))
        peaks[method] = (pred.max(), meas.max(), per_seed.max(1))
        out[method] = dict(max_err=float(np.max(np.abs(pred - meas))), peak_err=float(abs(pred.max() - meas.max())),
                           peak_pred=float(pred.max()), peak_meas=float(meas.max()),
                           peak_ci_half=float((ci.hi - ci.lo) / 2), predict_s=t_pred)
    gain = mean_ci(peaks["one_sam"][2] - peaks["gd"][2])
    out["gain_pred"] = float(peaks["one_sam"][0] - peaks["gd"][0])
    out["gain_meas"] = float(peaks["one_sam"][1] - peaks["gd"][1])
    out["gain_ci"] = [float(gain.lo), float(gain.hi)]
    return out


def cost_ratio(seeds: int = 20) -> dict:
    cfg = config("isotropic", 500, 4.0, 0.3, 10.0, 6.0, seeds=seeds, steps=3000)
    simulate(cfg.replace(num_seeds=1, steps=100, record_dense=0))  # warm-up (compilation)
    predict_curves(cfg.replace(steps=20, record_dense=0), "gd")
    t0 = time.perf_counter()
    simulate(cfg)
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    predict_curves(cfg, "gd")
    predict_curves(cfg, "one_sam", 6.0)
    t_pred = time.perf_counter() - t0
    return dict(config="isotropic n=500 d=2000 3000 steps, gd + one_sam(rho=6)", simulate_s=t_sim, seeds=seeds,
                predict_s=t_pred, ratio=t_pred / t_sim)


def table(rows) -> str:
    lines = ["| data | n | d/n | noise | init | rho | method | max err (pts) | peak err (pts) | peak pred / meas (%) "
             "| meas. 95% half-width (pts) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for m in ("gd", "one_sam"):
            e = r[m]
            lines.append(f"| {r['kind']} | {r['n']} | {r['ratio']:g} | {r['rate']:g} | {r['init']:g} | "
                         f"{r['rho'] if m == 'one_sam' else 0:g} | {m} | {100 * e['max_err']:.2f} | "
                         f"{100 * e['peak_err']:.2f} | {100 * e['peak_pred']:.1f} / {100 * e['peak_meas']:.1f} | "
                         f"{100 * e['peak_ci_half']:.2f} |")
    lines += ["", "| data | n | d/n | noise | init | rho | gain pred (pts) | gain meas (pts) | paired 95% CI (pts) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['n']} | {r['ratio']:g} | {r['rate']:g} | {r['init']:g} | {r['rho']:g} | "
                     f"{100 * r['gain_pred']:.2f} | {100 * r['gain_meas']:.2f} | "
                     f"[{100 * r['gain_ci'][0]:.2f}, {100 * r['gain_ci'][1]:.2f}] |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--out", default="bench/predict_table.json")
    ap.add_argument("--no-cost", action="store_true")
    ap.add_argument("--limit", type=int, default=len(GRID), help="first LIMIT grid points only")
    args = ap.parse_args(argv)
    rows = []
    for point in GRID[: args.limit]:
        t0 = time.perf_counter()
        rows.append(row(config(*point, seeds=args.seeds)))
        print(f"{point}: {time.perf_counter() - t0:.0f} s {json.dumps(rows[-1])}", flush=True)
    out = dict(rows=rows)
    if not args.no_cost:
        out["cost"] = cost_ratio()
        print(f"cost ratio: {out['cost']}", flush=True)
    print(table(rows))
    write_text_atomic(args.out, strict_json(out, indent=1))  # strict JSON: a non-finite number is null
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
