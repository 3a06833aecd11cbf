"""``linsam reproduce``, ``linsam check`` and ``linsam figures``: the paper's claims and figures.

    linsam reproduce [--quick | --full] [--out DIR] [--cifar-results FILE] [--seed N]
        derivation proofs + paper checks C1..C10 + figures F1..F9; writes DIR/report.md,
        DIR/report.json and DIR/figures/*.png|pdf (atomically); exit 0 only if every
        must-hold claim holds and every derivation is proved
    linsam check [C1 ... C10] [--quick | --full] [--config FILE] [--out DIR]
        the claims only (all by default); prints the table, --out writes the report
    linsam figures [F1 ... F9] [--quick | --full] [--config FILE] [--out DIR]
        the figures only (all by default) into DIR (default out/figures)

Modes: --quick (default; <= 3 minutes on 2 CPU cores), --full (more seeds and steps).
The output location is checked before any work (exit status 2 if it cannot be written);
``reproduce`` builds its result in a staging directory inside DIR and moves it in at the end
(report.md last), so an interrupted run leaves the previous result as it was. Ctrl-C (SIGINT)
exits with status 130, SIGTERM with 143 (docs/reliability.md).
Every check and figure reads its settings from linsam/configs/paper/{checks,figures}.toml ([Ck]/[Fk]);
``--config FILE`` (one id) or ``--config ID=FILE`` (repeatable) overrides them with your own.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path


class _Progress:
    """One line per step on stderr, with the elapsed time."""

    def __init__(self, quiet: bool = False):
        self.t0 = time.perf_counter()
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.t0:6.1f} s] {message}", file=sys.stderr, flush=True)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def _mode(args) -> str:
    return "full" if args.full else "tiny" if getattr(args, "tiny", False) else "quick"


def _config_files(entries: list[str] | None, ids: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in entries or []:
        if "=" in e:
            k, v = e.split("=", 1)
            out[k.strip().upper()] = v
        elif len(ids) == 1:
            out[ids[0].upper()] = e
        else:
            raise ValueError(f"--config {e}: with several checks/figures, write ID=FILE (e.g. C4={e})")
    return out


def _ids(names: list[str] | None, known: dict, what: str) -> list[str]:
    if not names:
        return list(known)
    out = []
    for n in names:
        key = n.strip().upper()
        if key not in known:
            raise ValueError(f"unknown {what} {n!r}; choose from {', '.join(known)}")
        out.append(key)
    return out


def _print_table(claims) -> None:
    from reproduction.report import claims_text_table

    print("\n" + claims_text_table(claims))


def _run_claims(ids, ctx, say, errors, results):
    import paper_checks

    for k, cid in enumerate(ids, 1):
        t0 = time.perf_counter()
        say(f"check {cid} ({k}/{len(ids)}) ...")
        try:
            r = paper_checks.run_claim(cid, ctx)
        except Exception as exc:  # a crashed check is reported, not raised: the rest still runs
            spec = paper_checks.module(cid).SPEC
            msg = f"{cid}: {type(exc).__name__}: {exc}"
            errors.append(msg)
            say(f"check {cid} CRASHED: {msg}\n{traceback.format_exc()}")
            r = paper_checks.ClaimResult.from_spec(spec, regime="(crashed)", measured=f"error: {msg}", estimate=None,
                                                   ci=None, verdict=paper_checks.FAILS)
        ctx.timings[f"check {cid}"] = time.perf_counter() - t0
        results[cid] = r
        say(f"check {cid}: {r.verdict}{' (must hold)' if r.must_hold else ''} ({ctx.timings[f'check {cid}']:.1f} s)")


def _run_figures(ids, ctx, out_dir, say, errors):
    import figures

    outs = []
    for k, fid in enumerate(ids, 1):
        t0 = time.perf_counter()
        say(f"figure {fid} ({k}/{len(ids)}) ...")
        try:
            f = figures.make(fid, ctx, out_dir)
            outs.append(f)
            say(f"figure {fid} written: {', '.join(Path(p).name for p in f.paths)} ({time.perf_counter() - t0:.1f} s)")
        except Exception as exc:
            msg = f"{fid}: {type(exc).__name__}: {exc}"
            errors.append(msg)
            say(f"figure {fid} FAILED: {msg}\n{traceback.format_exc()}")
        ctx.timings[f"figure {fid}"] = time.perf_counter() - t0
    return outs


def _context(args, ids, say):
    from paper_checks import Context

    if getattr(args, "cifar_results", None) is not None:  # a named file must be readable and follow the schema:
        from paper_checks.c8_cifar import load_results  # refuse it before any work (input error, exit status 2)

        load_results(args.cifar_results)

    return Context(mode=_mode(args), seed=args.seed, cifar_results=getattr(args, "cifar_results", None),
                   config_files=_config_files(args.config, ids), progress=say)


def _publish_figures(fig_outs, stage):
    """The figure records with the paths they will have once ``stage`` is committed."""
    import dataclasses

    return [dataclasses.replace(f, paths=tuple(str(stage.final(p)) for p in f.paths)) for f in fig_outs]


def run_reproduce(args: argparse.Namespace) -> int:
    from linsam.cli import StopOnSignal, out_dir

    say = _Progress(args.quiet)
    try:
        out = out_dir(args.out)  # before any work: exists or can be created, writable, not a file
        import paper_checks
        from reproduction.report import Run, write_report

        ctx = _context(args, [], say)
        plan = ctx.settings("reproduce", "reproduce")
        checks = _ids(plan.get("checks"), paper_checks.CLAIMS, "check")
        import figures as figmod

        figs = _ids(plan.get("figures"), figmod.FIGURES, "figure")
    except ValueError as err:
        print(f"linsam reproduce: error: {err}", file=sys.stderr)
        return 2
    from linsam._src.atomic import StagedDir

    note = f"nothing written to {out} (a previous result there is unchanged)"
    with StopOnSignal("linsam reproduce", note=note) as stop, StagedDir(out, last=("report.md",)) as stage:
        # everything is built in stage.path and moved into `out` only at the end (report.md
        # last): an interrupted or failed run never leaves a mix of two runs that looks finished
        stop.add(ctx.kill_background)
        say(f"linsam reproduce --{ctx.mode} (seed {ctx.seed}) -> {out}/report.md")
        errors: list[str] = []
        results: dict = {}
        try:
            if plan.get("background", True):
                ctx.start_background()
            # sweep-based checks first (the background proofs overlap them), then the figures
            # (they reuse the cached sweeps), then the checks that wait for the background process
            late = [c for c in checks if c in ("C1", "C2")]
            _run_claims([c for c in checks if c not in late], ctx, say, errors, results)
            fig_outs = _run_figures(figs, ctx, stage.path / "figures", say, errors)
            _run_claims(late, ctx, say, errors, results)
            try:
                ders = ctx.derivations()
            except Exception as exc:
                errors.append(f"derivations: {type(exc).__name__}: {exc}")
                ders = []
        finally:
            ctx.close()
        for d in ders:
            say(f"derivation {d['name']}: {'proved' if d['holds'] else 'NOT PROVED'} "
                f"({sum(c['holds'] for c in d['claims'])}/{len(d['claims'])} claims)")
        fig_outs = _publish_figures(fig_outs, stage)
        run = Run(mode=ctx.mode, seed=ctx.seed, claims=[results[c] for c in checks], derivations=ders,
                  figures=fig_outs, sweeps=ctx.sweeps_run(), settings=ctx.all_settings(), timings=ctx.timings,
                  errors=errors, total_s=say.elapsed, cifar_results=ctx.cifar_results, out_dir=str(out))
        write_report(run, stage.path)
        stage.commit()
    md, js = out / "report.md", out / "report.json"
    _print_table(run.claims)
    print(f"\nwrote {md}, {js} and {len(fig_outs)} figures in {out / 'figures'} ({run.total_s:.1f} s)")
    print(f"exit status {run.exit_status}: "
          + ("every must-hold claim holds" if run.exit_status == 0 else "a must-hold claim, a proof or a step failed"))
    return run.exit_status


def run_check(args: argparse.Namespace) -> int:
    import paper_checks
    from linsam.cli import StopOnSignal, out_dir

    if args.list:
        for cid, name in paper_checks.CLAIMS.items():
            spec = paper_checks.module(cid).SPEC
            print(f"{cid}  {'must hold' if spec.must_hold else '         '}  {spec.claim}")
        return 0
    say = _Progress(args.quiet)
    try:
        out = out_dir(args.out) if args.out else None  # before any work
        ids = _ids(args.names, paper_checks.CLAIMS, "check")
        ctx = _context(args, ids, say)
        for cid in ids:
            ctx.settings("checks", cid)  # refuse bad settings before any work
    except ValueError as err:
        print(f"linsam check: error: {err}", file=sys.stderr)
        return 2
    errors: list[str] = []
    results: dict = {}
    note = f"nothing written to {out}" if out else ""
    with StopOnSignal("linsam check", note=note) as stop:
        stop.add(ctx.kill_background)
        try:
            _run_claims(ids, ctx, say, errors, results)
        finally:
            ctx.close()
        claims = [results[c] for c in ids]
        if out is not None:
            from linsam._src.atomic import StagedDir
            from reproduction.report import Run, write_report

            ders = ctx.derivations() if ctx._derivations is not None else []
            run = Run(mode=ctx.mode, seed=ctx.seed, claims=claims, derivations=ders, figures=[],
                      sweeps=ctx.sweeps_run(), settings=ctx.all_settings(), timings=ctx.timings, errors=errors,
                      total_s=say.elapsed, cifar_results=ctx.cifar_results, out_dir=str(out))
            with StagedDir(out, last=("report.md",)) as stage:  # report.json and report.md move in together
                write_report(run, stage.path)
                stage.commit()
    _print_table(claims)
    if out is not None:
        print(f"wrote {out / 'report.md'}")
    return 0 if all(c.ok for c in claims) and not errors else 1


def run_figures(args: argparse.Namespace) -> int:
    import figures
    from linsam.cli import StopOnSignal, out_dir

    if args.list:
        for fid in figures.FIGURES:
            print(f"{fid}  {figures.module(fid).TITLE}")
        return 0
    say = _Progress(args.quiet)
    try:
        out = out_dir(args.out)  # before any work
        ids = _ids(args.names, figures.FIGURES, "figure")
        ctx = _context(args, ids, say)
        for fid in ids:
            ctx.settings("figures", fid)
    except ValueError as err:
        print(f"linsam figures: error: {err}", file=sys.stderr)
        return 2
    errors: list[str] = []
    # each figure file is written atomically: an interrupted run leaves whole files only
    with StopOnSignal("linsam figures", note=f"the figures finished before it are in {out}") as stop:
        stop.add(ctx.kill_background)
        try:
            outs = _run_figures(ids, ctx, out, say, errors)
        finally:
            ctx.close()
    for f in outs:
        print(f"{f.id}: {', '.join(f.paths)}\n    {f.caption}")
    return 0 if not errors else 1


def _common(p, *, out_default: str | None, cifar: bool) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="quick mode (default): <= 3 minutes on 2 CPU cores")
    mode.add_argument("--full", action="store_true", help="full mode: more seeds and steps")
    mode.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the test suite's mode
    p.add_argument("--out", default=out_default, metavar="DIR",
                   help=f"output directory (default: {out_default})" if out_default else "write a report into DIR")
    p.add_argument("--seed", type=_seed, default=0, metavar="N",
                   help="run seed N >= 0: shifts every sweep's seeds by 1000 N (default 0 = the shipped configs)")
    p.add_argument("--config", action="append", metavar="[ID=]FILE",
                   help="TOML settings overriding a check's/figure's shipped ones (repeatable; ID= needed "
                        "unless exactly one id is named)")
    if cifar:
        p.add_argument("--cifar-results", metavar="FILE", default=None,
                       help="results JSON of `linsam cifar` (claim C8); without it C8 is 'not run here'")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed must be an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"--seed must be an integer >= 0, got {v}")
    return v


def register(subparsers) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("reproduce", help="run the derivations, the paper checks C1-C10 and the figures F1-F9; "
                                                "write a report (the main job)", description=__doc__, formatter_class=fmt)
    _common(p, out_default="out/reproduce", cifar=True)
    p.set_defaults(func=run_reproduce)

    c = subparsers.add_parser("check", help="run paper checks C1-C10 (all by default) and print the claims table",
                              description=__doc__, formatter_class=fmt)
    c.add_argument("names", nargs="*", metavar="ID", help="claims to run (C1 ... C10)")
    c.add_argument("--list", action="store_true", help="list the claims and exit")
    _common(c, out_default=None, cifar=True)
    c.set_defaults(func=run_check)

    f = subparsers.add_parser("figures", help="draw figures F1-F9 (all by default)", description=__doc__,
                              formatter_class=fmt)
    f.add_argument("names", nargs="*", metavar="ID", help="figures to draw (F1 ... F9)")
    f.add_argument("--list", action="store_true", help="list the figures and exit")
    _common(f, out_default="out/figures", cifar=False)
    f.set_defaults(func=run_figures)
