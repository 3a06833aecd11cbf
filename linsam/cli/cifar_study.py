"""``linsam cifar-study``: the CPU CIFAR-10 study of issue 20 (docs/cifar_study.md): every method
tuned on the validation split (noisy labels) on the same budget, >= 5 report seeds, MLP depth 1
and 2, TOST against the best simple control, the paper's table beside ours. Resumable: finished
runs are files in the work directory and are skipped. JAX is imported when the command runs."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("cifar-study", help="CPU CIFAR-10 study: tuned controls, validation selection, "
                                                  "5 seeds, depth 1 and 2 (docs/cifar_study.md)",
                              description=__doc__)
    p.add_argument("--preset", default="full", help="full | smoke | tiny (default: full)")
    p.add_argument("--depths", help="comma-separated hidden-layer counts (full: 1,2)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--report-seeds", dest="report_seeds", help="comma-separated (full: 0,1,2,3,4)")
    p.add_argument("--tune-seeds", dest="tune_seeds", help="comma-separated, disjoint from the report seeds "
                                                           "(full: 100)")
    p.add_argument("--families", help="comma-separated subset of the methods (default: all; gd is required)")
    p.add_argument("--data", help="CIFAR-10 archive or directory (default as for `linsam cifar`)")
    p.add_argument("--work-dir", dest="work_dir", required=True, help="one JSON per finished run (resume)")
    p.add_argument("--out", required=True, help="study.json and study.md go here")
    p.add_argument("--smoke", action="store_true", help="label the report a smoke run (not results)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=main)


def _ints(text: str, flag: str) -> tuple:
    from linsam.cli import UsageError

    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"{flag} must be comma-separated integers, got {text!r}") from None


def build_config(args):
    from linsam.cifar import study as S
    from linsam.cli import UsageError

    if args.preset not in S.STUDY_PRESETS:
        raise UsageError(f"--preset must be one of {', '.join(S.STUDY_PRESETS)}, got {args.preset!r}")
    cfg = S.STUDY_PRESETS[args.preset]
    kw = {}
    if args.depths:
        kw["depths"] = _ints(args.depths, "--depths")
    if args.epochs is not None:
        kw["epochs"] = args.epochs
    if args.report_seeds:
        kw["report_seeds"] = _ints(args.report_seeds, "--report-seeds")
    if args.tune_seeds:
        kw["tune_seeds"] = _ints(args.tune_seeds, "--tune-seeds")
    if args.families:
        kw["families"] = tuple(x.strip() for x in args.families.split(",") if x.strip())
    try:
        return S.validate_study(cfg.replace(**kw))
    except ValueError as err:
        raise UsageError(str(err)) from None


def main(args: argparse.Namespace) -> int:
    from linsam.cli import UsageError, out_dir

    cfg = build_config(args)
    out, work = out_dir(args.out), out_dir(args.work_dir, "--work-dir")
    from linsam.cifar import data as cdata
    from linsam.cifar import study as S

    try:
        cdata.check_data_path(args.data)
        ds = cdata.load_cifar10(args.data, verbose=not args.quiet)
    except (cdata.DatasetError, ValueError, OSError) as err:
        raise UsageError(f"--data: {err}") from None
    say = (lambda *a, **k: None) if args.quiet else print
    rep = S.Study(cfg, ds, work, say=say).run()
    S.write(rep, out, smoke=args.smoke or args.preset != "full")
    from linsam.cifar.plot import plot_study

    plot_study(rep, out / "study.png")
    if not args.quiet:
        print(S.markdown(rep, smoke=args.smoke or args.preset != "full"))
    return 0
