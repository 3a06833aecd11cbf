r"""C8: CIFAR-10 with 30% symmetric label noise -- 1-SAM's best test accuracy is ~17 points above SGD's.

This needs a GPU: the ResNet-18 runs are made by ``linsam cifar`` (:mod:`linsam.cifar`), which
writes an aggregate results JSON (schema ``linsam.cifar.results/1+aggregate``, see
docs/cifar.md): ``methods[<name>]`` with ``peak_test_acc``, ``peak_epoch``,
``completed_epochs``, ``status`` and ``config`` (``noise_rate``, ``epochs``, ...).

Given that file (``linsam reproduce --cifar-results FILE``), the check reads the peak test
accuracies of ``sgd`` and ``one_sam`` (and J-SAM, L-SAM, the regularisers when present) and
compares the gap with the paper's. One run per method (one seed): no confidence interval.
Holds iff the measured gap is at least ``min_gain`` (default 0.10, i.e. 10 points: the
paper's effect at well over half its size). Without the file, or without both methods in it,
the verdict is "not run here" -- never "holds".
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from reproduction._result import FAILS, HOLDS, NOT_RUN, ClaimResult, ClaimSpec

SPEC = ClaimSpec(
    id="C8",
    claim="CIFAR-10, 30% symmetric label noise, ResNet-18: 1-SAM's best test accuracy is about 17 points "
          "higher than SGD's.",
    where="Sec. 1 / Sec. 4 (CIFAR-10 experiments)",
    expected="1-SAM peak test acc - SGD peak test acc ~ +17 pp (paper: 69.5% vs 52.5%)",
    must_hold=False,
)

NAMES = {"sgd": "SGD", "one_sam": "1-SAM", "jsam": "J-SAM", "lsam": "L-SAM", "nsam": "n-SAM", "jreg": "J-reg",
         "reg": "reg (fixed)"}


def measure(ctx, cfg: dict) -> dict:
    path = ctx.cifar_results
    if path is None:
        return dict(available=False, reason="no --cifar-results FILE given (the ResNet-18 runs need a GPU: "
                                            "`linsam cifar`)")
    p = Path(path)
    if not p.is_file():
        return dict(available=False, reason=f"results file {path} not found")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        return dict(available=False, reason=f"results file {path} is not valid JSON: {err}")
    return read_results(data, str(path))


def read_results(data: dict, source: str = "") -> dict:
    """The numbers C8 needs from a results JSON (aggregate, or a single method's file)."""
    if "methods" not in data:
        if "method" in data and "summary" in data:  # one method's results.json
            return dict(available=False, reason=f"{source} holds one method ({data['method']}); C8 needs the "
                                                f"aggregate file with sgd and one_sam")
        return dict(available=False, reason=f"{source} has no 'methods' table (schema {data.get('schema')!r})")
    methods = {}
    for name, r in data["methods"].items():
        conf = r.get("config", {}) or {}
        data_info = r.get("data") or {}
        methods[name] = dict(peak=r.get("peak_test_acc"), epoch=r.get("peak_epoch"), epochs_done=r.get("completed_epochs"),
                             epochs=conf.get("epochs"), status=r.get("status"), noise_rate=conf.get("noise_rate"),
                             noise_kind=conf.get("noise_kind"), rho=conf.get("rho"), preset=r.get("preset"),
                             realised=data_info.get("realised_rate"), n_train=data_info.get("n_train"))
    missing = [m for m in ("sgd", "one_sam") if m not in methods or methods[m]["peak"] is None]
    if missing:
        return dict(available=False, reason=f"{source}: no peak test accuracy for {', '.join(missing)}",
                    methods=methods)
    return dict(available=True, source=source, schema=data.get("schema"), device=data.get("device"),
                comparable=data.get("comparable"), methods=methods)


def evaluate(m: dict, cfg: dict) -> ClaimResult:
    paper_gain = float(cfg.get("paper_gain", 0.17))
    min_gain = float(cfg.get("min_gain", 0.10))
    expected = (f"1-SAM peak - SGD peak ~ +{100 * paper_gain:.0f} pp (paper: 69.5% vs 52.5%); holds if >= "
                f"+{100 * min_gain:.0f} pp")
    if not m.get("available"):
        return ClaimResult.from_spec(SPEC, regime="CIFAR-10, ResNet-18, 30% symmetric noise (GPU)",
                                     measured=m.get("reason", "not available"), estimate=None, ci=None,
                                     verdict=NOT_RUN, details=m, expected=expected)
    ms = m["methods"]
    gain = float(ms["one_sam"]["peak"]) - float(ms["sgd"]["peak"])
    ok = math.isfinite(gain) and gain >= min_gain
    accs = ", ".join(f"{NAMES.get(k, k)} {100 * float(v['peak']):.1f}% (epoch {v['epoch']})" for k, v in ms.items()
                     if v["peak"] is not None)
    measured = f"peak test accuracy: {accs}; 1-SAM - SGD = {100 * gain:+.1f} pp (one run per method, no CI)"
    sgd = ms["sgd"]
    partial = [k for k, v in ms.items() if v.get("status") not in (None, "completed")]
    realised = f" (realised {sgd['realised']:.3f})" if isinstance(sgd.get("realised"), (int, float)) else ""
    n_train = f" ({sgd['n_train']} training images)" if sgd.get("n_train") else ""
    preset = f", preset {sgd['preset']}" if sgd.get("preset") else ""
    regime = (f"CIFAR-10{n_train}, ResNet-18, {sgd.get('noise_kind') or 'symmetric'} noise {sgd.get('noise_rate')}"
              f"{realised}, {sgd.get('epochs_done')}/{sgd.get('epochs')} epochs, rho {ms['one_sam'].get('rho')}{preset}; "
              f"device {m.get('device') or 'unknown'}; source {m['source']}")
    if m.get("comparable") is False:
        regime += "; methods NOT comparable (different data or settings)"
    if partial:
        regime += f"; runs not completed: {', '.join(partial)}"
    if sgd.get("noise_rate") not in (None, 0.3):
        regime += " (NOT the paper's 30% noise)"
    return ClaimResult.from_spec(SPEC, regime=regime, measured=measured, estimate=gain, ci=None,
                                 verdict=HOLDS if ok else FAILS, details=m, expected=expected)
