"""``linsam cifar``: CIFAR-10 + label noise + ResNet-18, SGD vs the SAM family (issue 6).

Needs the optional extra ``gpu`` (flax, optax, pillow); imported lazily so ``linsam --help``
works without it. Every argument is checked before any data is read or anything is compiled;
a bad one is refused with a message naming the flag (exit status 2); nothing is created
before the data has loaded. Ctrl-C leaves the results with status ``interrupted`` (exit
status 130), SIGTERM with ``killed`` (143).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

#: time.monotonic() when this module was imported: the fallback for the process start.
_IMPORTED = time.monotonic()


def process_start_monotonic() -> float:
    """:func:`time.monotonic` value of this process's start (Linux: /proc/self/stat), else
    of this module's import. ``--total-time-limit`` counts from it, so that an outer
    ``timeout`` started just before the process bounds the same span."""
    try:
        with open("/proc/self/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time after boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - started
        if 0.0 <= age <= time.monotonic() - _IMPORTED + 60.0:  # else implausible: use the import time
            return time.monotonic() - age
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    return _IMPORTED

DESCRIPTION = """Train CIFAR-10 ResNet-18 with label noise under SGD (gd) and the SAM family; write per-epoch
metrics (test accuracy, train accuracy on the clean and the noisy subset, losses, last-layer
weight norm, penultimate activation norm, time per epoch) to OUT/<method>/results.json and
OUT/results.json (peak test accuracy and its epoch per method), checkpoint every epoch and
resume, and draw OUT/curves.png. With --work-dir, the per-method results and checkpoints go
there and OUT holds only results.json and curves.png. Presets: paper (the reported setting),
budget (fits one 5.5-minute H200 call: a 330 s guard, 310 s planned), tiny (CPU smoke run), cpu (the
whole comparison on 2 CPU cores in under 30 minutes: an MLP, 10,000 images, three seeds, paired
intervals; a CPU proxy, not ResNet-18). Flags override the preset. With several seeds (--seeds, or the
cpu preset) each seed runs into WORK/seed_<s>/ and OUT/results.json holds every seed and the paired
95% intervals over them."""


def _int_or_none(text: str):
    if text.lower() in ("none", "all", "off"):
        return None
    return int(text)


def register(subparsers) -> None:
    p = subparsers.add_parser("cifar", help="CIFAR-10 ResNet-18 label-noise comparison (needs flax, optax, pillow)",
                              description=DESCRIPTION)
    p.add_argument("--preset", default="paper", help="paper | budget | tiny | cpu (default: paper)")
    p.add_argument("--arch", help="resnet | mlp | cnn (preset cpu: mlp)")
    p.add_argument("--method",
                   help="comma-separated, the library's names: gd (SGD), nsam, one_sam, lsam, jsam, jreg, "
                        "jreg_fixed (default: the preset's)")
    p.add_argument("--noise", type=float, dest="noise_rate", help="label-noise rate in [0, 1) (preset: 0.3)")
    p.add_argument("--noise-kind", dest="noise_kind", help="symmetric | symmetric_bernoulli | asymmetric | pair_flip")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--lr", type=float)
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float, dest="weight_decay")
    p.add_argument("--schedule", help="cosine | step | constant")
    p.add_argument("--rho", type=float, help="SAM radius")
    p.add_argument("--lam-last", type=float, dest="lam_last", help="jreg_fixed: last-layer coefficient (default: Prop. 4.1)")
    p.add_argument("--lam-act", type=float, dest="lam_act", help="jreg_fixed: activation coefficient (default: Prop. 4.1)")
    p.add_argument("--width", type=int, help="channels of the first stage (64 = ResNet-18)")
    p.add_argument("--depth", type=int, help="18 (ResNet-18), 10 or 6 (shallow test variants)")
    p.add_argument("--norm", help="layer | group | batch (batch: gd and nsam only)")
    p.add_argument("--dtype", dest="compute_dtype", help="float32 | bfloat16 compute (parameters stay float32)")
    p.add_argument("--chunk-size", type=_int_or_none, dest="chunk_size",
                   help="examples per vmap chunk of the per-example methods ('none': the whole batch)")
    p.add_argument("--no-augment", action="store_true", help="switch off the random crop + flip")
    p.add_argument("--augment", action="store_true", help="switch on the random crop + flip")
    p.add_argument("--train-subset", type=_int_or_none, dest="train_subset",
                   help="train on a random subset of this many images ('all': every image)")
    p.add_argument("--eval-train-size", type=_int_or_none, dest="eval_train_size",
                   help="training images used for the per-epoch train metrics ('all')")
    p.add_argument("--eval-batch-size", type=int, dest="eval_batch_size")
    p.add_argument("--seed", type=int)
    p.add_argument("--seeds", help="comma-separated seeds, one run each, combined with paired intervals "
                                   "(preset cpu: 0,1,2)")
    p.add_argument("--time-limit", type=float, dest="time_limit_s",
                   help="seconds per method (compile included); stops after the last epoch that fits")
    p.add_argument("--total-time-limit", dest="total_time_limit_s",
                   help="seconds for the whole call from the start of the process, split over the methods "
                        "(preset budget: 310; 'none': no limit)")
    p.add_argument("--log-every", type=int, dest="log_every", help="progress line every this many steps")
    p.add_argument("--data", help="CIFAR-10 JPEG tar.gz / directory, or cifar-10-batches-py (default: "
                                  "../shared/data/cifar10-jpeg.tar.gz, or $LINSAM_CIFAR10)")
    p.add_argument("--out", required=True, help="output directory (results, checkpoints, figure)")
    p.add_argument("--work-dir", dest="work_dir",
                   help="per-method results and checkpoints go here instead of OUT (OUT then holds only "
                        "results.json and curves.png)")
    p.add_argument("--fresh", action="store_true", help="ignore existing checkpoints in OUT and start over")
    p.add_argument("--stop-after", type=int, dest="stop_after", help=argparse.SUPPRESS)  # simulated interruption
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--devices", type=int, help="data parallel over the first N devices (default: every device; "
                                               "1: one device). The batch must split evenly (docs/scaling.md)")
    from linsam.cli import distributed

    distributed.add_flags(p)  # several hosts: one global mesh; process 0 writes (docs/scaling.md)
    p.set_defaults(func=main)


_FIELDS = ("noise_rate", "noise_kind", "epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule", "rho",
           "lam_last", "lam_act", "width", "depth", "norm", "compute_dtype", "chunk_size", "train_subset",
           "eval_train_size", "eval_batch_size", "seed", "log_every", "arch")


def build_configs(args) -> tuple[list, dict]:
    """CifarConfigs (one per method) from the preset and the flags; ValueError naming the flag.

    ``--method`` is parsed here, once: each name must be one of :data:`linsam.rules.METHODS`
    (:func:`linsam.cifar.train.parse_method`); the trainer builds the method value from it."""
    from linsam.cifar import presets
    from linsam.cifar.train import CifarConfig, parse_method, validate_config

    fields = presets.preset_fields(args.preset)
    for f in _FIELDS:
        v = getattr(args, f, None)
        if v is not None:
            fields[f] = v
    if args.no_augment and args.augment:
        raise ValueError("--augment and --no-augment contradict each other")
    if args.no_augment:
        fields["augment"] = False
    if args.augment:
        fields["augment"] = True
    if args.stop_after is not None and args.stop_after < 1:
        raise ValueError(f"--stop-after must be an integer >= 1, got {args.stop_after}")
    methods_text = args.method if args.method is not None else ",".join(presets.PRESETS[args.preset]["methods"])
    names = [m for m in (s.strip() for s in methods_text.split(",")) if m]
    if not names:
        raise ValueError("--method must name at least one method")
    configs = []
    for name in names:
        m = parse_method(name)
        limit = args.time_limit_s if args.time_limit_s is not None else presets.preset_time_limit(args.preset, m)
        configs.append(validate_config(CifarConfig(method=m, time_limit_s=limit, **fields)))
    if len({c.method for c in configs}) != len(configs):
        raise ValueError(f"--method lists a method twice: {methods_text!r}")
    return configs, fields


def build_seeds(args) -> list[int] | None:
    """The seeds of a several-seed run (``--seeds``, else the preset's), or None (one run,
    ``--seed``). ValueError naming the flag."""
    from linsam.cifar import presets

    text = getattr(args, "seeds", None)
    if text is not None and getattr(args, "seed", None) is not None:
        raise ValueError("--seed and --seeds contradict each other (give one)")
    if text is None:
        preset = presets.preset_seeds(args.preset)
        if preset is None:
            return None
        return [args.seed] if getattr(args, "seed", None) is not None else list(preset)
    try:
        seeds = [int(x) for x in (y.strip() for y in str(text).split(",")) if x]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers >= 0, got {text!r}") from None
    if not seeds or any(x < 0 for x in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must list distinct integers >= 0, got {text!r}")
    return seeds


def build_timing(args) -> tuple[float | None, dict | None]:
    """(total seconds or None, shares or None) from the preset and ``--total-time-limit``."""
    import math

    from linsam.cifar import presets

    timing = presets.preset_timing(args.preset)
    text = getattr(args, "total_time_limit_s", None)
    if text is None:
        return timing["total_time_limit_s"], timing["time_shares"]
    if str(text).strip().lower() in ("none", "off"):
        return None, timing["time_shares"]
    try:
        total = float(text)
    except ValueError:
        total = float("nan")
    if not math.isfinite(total) or total <= 0:
        raise ValueError(f"--total-time-limit must be a number of seconds > 0 (or 'none'), got {text!r}")
    return total, timing["time_shares"]


def _check_writable_dir(path: Path, flag: str) -> None:
    """Refuse ``path`` (ValueError naming ``flag``) unless it is, or can be created as, a
    writable directory. Checked by doing it (:func:`linsam.cli.out_dir`: also as root, where
    permission bits say nothing, e.g. under /proc); leaves nothing behind."""
    from linsam.cli import out_dir

    out_dir(path, flag)


class _SigtermAsException:
    """While active, SIGTERM raises :class:`linsam.cifar.train.Terminated` in the main thread."""

    def __init__(self, exc_type):
        self.exc_type = exc_type
        self.old = None

    def __enter__(self):
        def handler(signum, frame):
            raise self.exc_type("SIGTERM")

        try:
            self.old = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread
            self.old = None
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)
        return False


def main(args) -> int:
    try:
        import flax  # noqa: F401
        import optax  # noqa: F401
        import PIL  # noqa: F401
    except ModuleNotFoundError as err:
        print(f"linsam cifar: error: needs the optional extra 'gpu' ({err.name} is missing): "
              f"pip install 'linsam[gpu]'", file=sys.stderr)
        return 2
    from linsam.cli import distributed

    if (rc := distributed.start(args, "linsam cifar")) is not None:
        return rc
    from linsam.cifar import data as cdata
    from linsam.cifar import train as ctrain

    try:
        configs, _ = build_configs(args)
        from linsam.cifar import parallel

        shards = parallel.num_shards(parallel.data_mesh(getattr(args, "devices", None)))
        for c in configs:
            parallel.check_split(c, shards)
        seeds = build_seeds(args)
        total, shares = build_timing(args)
        # the output locations before the data (decoding CIFAR-10 takes seconds): one line naming
        # the flag, and nothing left behind (a refused --work-dir leaves no empty --out either)
        out = Path(args.out)
        _check_writable_dir(out, "--out")
        work = Path(args.work_dir) if getattr(args, "work_dir", None) else None
        if work is not None:
            _check_writable_dir(work, "--work-dir")
        data_path = cdata.check_data_path(args.data)
    except (ValueError, FileNotFoundError) as err:
        print(f"linsam cifar: error: {err}", file=sys.stderr)
        return 2
    deadline = None if total is None else process_start_monotonic() + total
    from linsam.cli import hand_over_signals

    hand_over_signals()  # from here on a Ctrl-C marks the results "interrupted" (below), resumable
    try:
        with _SigtermAsException(ctrain.Terminated):
            if seeds is not None:
                ctrain.run_seeds(configs, seeds, out, data_path=data_path, fresh=args.fresh, verbose=not args.quiet,
                                 plot=not args.no_plot, extra_info={"preset": args.preset}, work_dir=work,
                                 deadline=deadline, time_shares=shares, started=process_start_monotonic(),
                                 devices=getattr(args, "devices", None))
            else:
                ctrain.run(configs, out, data_path=data_path, fresh=args.fresh, stop_after_epochs=args.stop_after,
                           verbose=not args.quiet, plot=not args.no_plot, extra_info={"preset": args.preset},
                           work_dir=work, deadline=deadline, time_shares=shares, devices=getattr(args, "devices", None))
    except (ValueError, FileNotFoundError) as err:  # e.g. a corrupt archive found while decoding
        print(f"linsam cifar: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("linsam cifar: interrupted; the results so far say status 'interrupted' (run again to resume)",
              file=sys.stderr)
        return 130
    except ctrain.Terminated:
        print("linsam cifar: stopped by SIGTERM; the results so far say status 'killed' (run again to resume)",
              file=sys.stderr)
        return 143
    return 0
