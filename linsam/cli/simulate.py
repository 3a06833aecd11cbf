"""``linsam simulate`` and ``linsam regimes`` subcommands.

    linsam simulate --default-sweep [--out DIR]          # the issue's default sweep (configs/default.toml)
    linsam simulate --config NAME_OR_FILE.toml [--out DIR] [--num-seeds N] [--seed-offset K]
    linsam regimes --run --results out/regimes --out docs/regimes.md

``regimes --run`` simulates every shipped config with a ``[meta] regime`` (selection
configs first) whose results are not yet under ``--results`` (``--force`` reruns them),
then writes the report from the saved results only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from linsam.cli import distributed


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="run a training sweep (methods x rho x seeds) from a TOML config and save it",
        description="Run a sweep from a TOML config (a path, or the name of a shipped config in "
        "linsam/configs/) and save results.nc (netCDF: xarray.open_dataset opens it) + config.json. "
        "A config must set model, methods and rhos; --default-sweep runs the default sweep.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="TOML file, or the name of a shipped config (e.g. 'default')")
    src.add_argument("--default-sweep", action="store_true",
                     help="the default sweep: 2 methods x 8 rho x 20 seeds, n=500, d=2000, 3000 steps")
    src.add_argument("--list", action="store_true", help="list the shipped configs and exit")
    p.add_argument("--out", help="output directory (default: out/sim/<config name>)")
    p.add_argument("--num-seeds", type=int, help="override num_seeds")
    p.add_argument("--seed-offset", type=int, help="override seed_offset")
    p.add_argument("--seed-chunk", type=int, help="override seed_chunk (seeds per compiled call)")
    distributed.add_flags(p)  # several hosts: the seed axis on the global mesh; process 0 saves
    p.set_defaults(func=_simulate)

    r = subparsers.add_parser(
        "regimes",
        help="write the regime map (docs/regimes.md) from saved sweeps",
        description="Write the regime map from the sweeps saved under --results; with --run, first "
        "simulate the shipped regime configs that are missing there.",
    )
    r.add_argument("--results", default="out/regimes", help="directory of saved sweeps (one sub-directory each)")
    r.add_argument("--out", default="docs/regimes.md", help="markdown file to write")
    r.add_argument("--run", action="store_true", help="simulate missing regime configs first")
    r.add_argument("--force", action="store_true", help="with --run: rerun configs that already have results")
    r.add_argument("--only", nargs="*", help="with --run: only these config names")
    distributed.add_flags(r)
    r.set_defaults(func=_regimes)


def _simulate(args) -> int:
    from linsam._src import simulate as sim

    if args.list:
        for name in sim.shipped_configs():
            cfg = sim.load_config(name)
            print(f"{name:28s} {cfg.description.strip().splitlines()[0] if cfg.description else ''}")
        return 0
    from linsam.cli import StopOnSignal, out_dir

    if (rc := distributed.start(args, "linsam simulate")) is not None:
        return rc
    from linsam._src.engine.shard import is_primary

    try:
        if args.config is not None and Path(args.config).is_dir():
            raise ValueError(f"--config {args.config!r} is a directory; give a TOML file or a shipped config name")
        cfg = sim.load_config("default" if args.default_sweep else args.config)
        changes = {k: v for k, v in (("num_seeds", args.num_seeds), ("seed_offset", args.seed_offset),
                                     ("seed_chunk", args.seed_chunk)) if v is not None}
        if changes:
            cfg = cfg.replace(**changes)
        # the output location is checked before the sweep, which may take hours
        out = out_dir(args.out or Path("out/sim") / cfg.name)
    except ValueError as err:
        print(f"linsam simulate: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. the config cannot be read
        print(f"linsam simulate: error: --config {args.config!r}: {err.strerror or err}", file=sys.stderr)
        return 2
    _enable_x64_if_needed(cfg)
    with StopOnSignal("linsam simulate", note=f"the sweep was not saved; {out} is unchanged"):
        res = sim.simulate(cfg, progress=True)
        if is_primary():
            res.save(out)
    if not is_primary():
        return 0  # process 0 saves and reports
    _print_summary(res)
    print(f"saved {out}/results.nc and config.json ({res.elapsed_s:.1f} s)")
    return 0


def _enable_x64_if_needed(cfg) -> None:
    if cfg.dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)


def _print_summary(res) -> None:
    from linsam import selection
    from linsam.stats import mean_ci

    es = selection.early_stop(res)
    n_seeds = len(res.axes["seed"])
    print(f"{res.config.name}: test accuracy in % (100 x test_acc, which the files hold as a fraction), mean [95% CI] "
          f"over {n_seeds} seed{'s' if n_seeds != 1 else ''}, at the validation-selected step (the stopping rule a "
          "user has: validation labels carry the training noise); the oracle peak of the test curve beside it")

    def ci_text(values):
        ci = mean_ci(values)
        interval = (f"[{100 * ci.lo:6.2f}, {100 * ci.hi:6.2f}]" if np.isfinite(ci.lo) and np.isfinite(ci.hi)
                    else "[no CI: one seed]" if ci.n == 1 else "[no CI]")
        return f"{100 * ci.mean:6.2f} {interval}"

    free = ("gd",) if res.config.lam_scale_by_rho else ("gd", "jreg_fixed")
    for mi, m in enumerate(res.axes["rule"]):
        for ri, rho in enumerate(res.axes["rho"]):
            if m in free and ri > 0:  # trained once per seed; the same numbers at every rho
                continue
            print(f"  {m:10s} rho={rho:<8g} {ci_text(es.selected[mi, ri])}  median step "
                  f"{np.median(es.step[mi, ri]):.0f}   oracle peak {ci_text(es.oracle[mi, ri])}")


def _regimes(args) -> int:
    from linsam.cli import StopOnSignal, out_dir, out_file

    if (rc := distributed.start(args, "linsam regimes")) is not None:
        return rc
    try:  # output locations first: a regime sweep takes minutes
        results = out_dir(args.results, "--results") if args.run else Path(args.results)
        out_file(args.out)
    except ValueError as err:
        print(f"linsam regimes: error: {err}", file=sys.stderr)
        return 2
    with StopOnSignal("linsam regimes", note="the sweeps finished before it are saved"):
        return _regimes_run(args, results)


def _regimes_run(args, results: Path) -> int:
    from reproduction import regimes
    from linsam._src.engine.shard import is_primary

    if args.run:
        groups = regimes._regime_configs_by_group()
        only = None
        if args.only:  # regime names or config names
            names = set(regimes.regime_configs())
            unknown = set(args.only) - names - set(groups)
            if unknown:
                print(f"linsam regimes: not regimes or regime configs: {sorted(unknown)}; known regimes: "
                      f"{sorted(groups)}", file=sys.stderr)
                return 2
            only = {r for r, g in groups.items()
                    if r in args.only or any(c is not None and c.name in args.only
                                             for c in [g["select"], *g["report"], *g["control"]])}
        t0 = time.perf_counter()
        regimes.run_all(results, only=only, force=args.force, log=lambda msg: print(msg, flush=True))
        print(f"regime sweeps done in {time.perf_counter() - t0:.0f} s", flush=True)
    if not is_primary():
        return 0  # process 0 writes the report
    if not results.is_dir() or not any(results.glob("*/config.json")):
        print(f"linsam regimes: no saved results under {results} (use --run)", file=sys.stderr)
        return 2
    cmd = "linsam regimes --run --results {} --out {}".format(args.results, args.out)
    try:  # a broken saved sweep (missing, truncated, mixed or edited files): one line, exit status 2
        regimes.write_report(results, args.out, command=cmd)
    except ValueError as err:
        print(f"linsam regimes: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0

