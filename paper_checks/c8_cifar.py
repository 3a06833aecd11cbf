r"""C8: CIFAR-10 with 30% symmetric label noise -- 1-SAM's best test accuracy is ~17 points above SGD's.

This needs a GPU: the ResNet-18 runs are made by ``linsam cifar`` (:mod:`linsam.cifar`), which
writes an aggregate results JSON (schema ``linsam.cifar.results/1+aggregate``, see
docs/cifar.md): ``methods[<name>]`` with ``peak_test_acc``, ``peak_epoch``,
``completed_epochs``, ``status`` and ``config`` (``noise_rate``, ``epochs``, ...).

Given that file (``linsam reproduce --cifar-results FILE``), the check reads the peak test
accuracies of ``gd`` (the SGD baseline) and ``one_sam`` (and J-SAM, L-SAM, the regularisers
when present) and compares the gap with the paper's. Method keys are the library's names
(:data:`linsam.rules.METHODS`); files written before the rename (``sgd``, ``reg``) are read
with those keys mapped on load (:data:`LEGACY_METHOD_KEYS`). One run per method (one seed): no confidence interval.
Holds iff the measured gap is at least ``min_gain`` (default 0.10, i.e. 10 points: the
paper's effect at well over half its size).

Verdicts besides holds/fails:

- no ``--cifar-results``, or a file without both methods: "not run here" (never "holds");
- a file that was named but is missing or cannot be read (not a file, no permission, not
  UTF-8, not JSON) or does not follow the schema (:func:`validate_results`: e.g. no or an
  empty ``methods`` table, a peak that is not a fraction): malformed input, never a verdict on
  the claim. ``linsam check``/``reproduce`` refuse it before any work (exit status 2, one line,
  :func:`load_results`); called from Python, the result says ``error: ...`` and is marked
  must-hold;
- no ``--cifar-results``: C8 still reports the CPU proxy shipped with the repository
  (:data:`CPU_PROXY_RESULTS`, ``results/cifar_cpu/results.json``: ``linsam cifar --preset cpu``,
  an MLP on 10,000 images, three seeds, peak accuracies with paired 95% intervals) beside
  "ResNet-18: not run here"; the verdict on the paper's claim stays "not run here" (the proxy
  is another network in another setting);
- a run in another setting than the paper's (:data:`PAPER_SETTING`: 30% symmetric noise,
  all 50,000 training images, ResNet-18 at width 64, batch 128, lr 0.01, weight decay 5e-4,
  rho 0.01, 200 epochs, every run completed; or methods run in different settings): "not
  comparable" with the reasons, and the measured gap beside them. The verdict is "not run
  here" (the claim is about the paper's setting, which was not run), never holds or fails.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from reproduction._result import FAILS, HOLDS, NOT_COMPARABLE, NOT_RUN, ClaimResult, ClaimSpec

SPEC = ClaimSpec(
    id="C8",
    claim="CIFAR-10, 30% symmetric label noise, ResNet-18: 1-SAM's best test accuracy is about 17 points "
          "higher than SGD's.",
    where="Sec. 1 / Sec. 4 (CIFAR-10 experiments)",
    expected="1-SAM peak test acc - SGD peak test acc ~ +17 pp (paper: 69.5% vs 52.5%)",
    must_hold=False,
)

NAMES = {"gd": "SGD", "one_sam": "1-SAM", "jsam": "J-SAM", "lsam": "L-SAM", "nsam": "n-SAM", "jreg": "J-reg",
         "jreg_fixed": "reg (fixed)", "gce": "GCE (Zhang & Sabuncu 2018)", "label_smoothing": "label smoothing",
         "weight_decay": "SGD + weight decay"}
#: Method keys of results files written before the CIFAR module took the library's names.
LEGACY_METHOD_KEYS = {"sgd": "gd", "reg": "jreg_fixed"}
#: The two methods the claim compares: the SGD baseline and 1-SAM.
BASE, SAM = "gd", "one_sam"

#: The paper's setting (Sec. 4, per a secondary source): config field -> value. A results file
#: whose gd (SGD) or one_sam run differs in any recorded field is "not comparable". Fields the file
#: does not record are not judged (older or hand-made files).
PAPER_SETTING = {"arch": "resnet", "noise_kind": "symmetric", "noise_rate": 0.3, "depth": 18, "width": 64, "batch_size": 128,
                 "lr": 0.01, "weight_decay": 5e-4, "rho": 0.01, "epochs": 200}
#: Training images of the full CIFAR-10 training set.
PAPER_N_TRAIN = 50000
#: The CPU proxy run shipped with the repository (``linsam cifar --preset cpu --out results/cifar_cpu``),
#: reported when no ``--cifar-results`` file is given.
CPU_PROXY_RESULTS = Path(__file__).resolve().parents[1] / "results" / "cifar_cpu" / "results.json"


def default_proxy() -> Path:
    """The shipped CPU proxy run: :data:`CPU_PROXY_RESULTS` in a checkout (editable install),
    else ``results/cifar_cpu/results.json`` under the working directory (a clone's root after
    ``pip install .``, which does not copy ``results/`` into the installed package)."""
    if CPU_PROXY_RESULTS.is_file():
        return CPU_PROXY_RESULTS
    return Path.cwd() / "results" / "cifar_cpu" / "results.json"


def read_results_file(path) -> dict:
    """The parsed JSON object of a results file; ``ValueError`` saying why it cannot be read."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"--cifar-results {path}: no such file")
    if not p.is_file():
        raise ValueError(f"--cifar-results {path}: not a file")
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as err:
        raise ValueError(f"--cifar-results {path}: cannot be read ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"--cifar-results {path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--cifar-results {path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"--cifar-results {path}: a JSON {type(data).__name__}, not a results object")
    return data


def _pct(v) -> str:
    return "n/a" if _num(v) is None else f"{100 * v:.1f}"


#: The results schemas C8 reads (``schema`` of `linsam cifar`'s aggregate file; absent in hand-made files).
SCHEMA_PREFIX = "linsam.cifar.results/"


def _fail(source, what: str):
    raise ValueError(f"--cifar-results {source}: {what}; expected the aggregate results.json of `linsam cifar` "
                     f"(docs/cifar.md)")


def validate_results(data, source: str = "") -> None:
    """Check a results object against the schema C8 reads (docs/cifar.md); ``ValueError`` naming
    the first field that is wrong. Malformed input, never a verdict on the claim.

    - ``schema``, if present: a string starting with :data:`SCHEMA_PREFIX`;
    - ``methods``: a non-empty object whose keys are the library's method names (or the legacy
      keys of :data:`LEGACY_METHOD_KEYS`) and whose values are objects;
    - per method: ``peak_test_acc`` null or a number in [0, 1]; ``peak_epoch`` and
      ``completed_epochs`` null or numbers >= 0; ``status`` null or a string; ``config``,
      ``data``, ``peak_test_acc_ci`` and ``gain_over_gd`` null or objects, the intervals with
      ``mean``/``lo``/``hi`` null (undefined, e.g. one seed) or numbers;
    - ``comparable``, if present: true or false.
    """
    from linsam.rules import METHODS

    if not isinstance(data, dict):
        _fail(source, f"a JSON {type(data).__name__}, not a results object")
    schema = data.get("schema")
    if "methods" not in data:
        if "method" in data and "summary" in data:
            _fail(source, f"holds one method's results ({data.get('method')!r}); C8 needs the aggregate file with "
                          f"{BASE} (SGD) and {SAM}")
        _fail(source, f"no 'methods' table (schema {schema!r})")
    if schema is not None and not (isinstance(schema, str) and schema.startswith(SCHEMA_PREFIX)):
        _fail(source, f"schema {schema!r} is not a `linsam cifar` results schema ({SCHEMA_PREFIX}...)")
    table = data["methods"]
    if not isinstance(table, dict):
        _fail(source, f"'methods' is a JSON {type(table).__name__}, not an object")
    if not table:
        _fail(source, f"'methods' is empty (no method was run; C8 needs {BASE} (SGD) and {SAM})")
    if "comparable" in data and not isinstance(data["comparable"], bool) and data["comparable"] is not None:
        _fail(source, f"comparable is {data['comparable']!r}, not true or false")
    allowed = set(METHODS) | set(LEGACY_METHOD_KEYS)
    for name, r in table.items():
        if name not in allowed:
            _fail(source, f"methods.{name}: not a method name (allowed: {', '.join(METHODS)})")
        if not isinstance(r, dict):
            _fail(source, f"methods.{name} is not an object")
        peak = r.get("peak_test_acc")
        if peak is not None and (_num(peak) is None or not math.isfinite(peak) or not 0 <= peak <= 1):
            _fail(source, f"methods.{name}.peak_test_acc is {peak!r}, not a number in [0, 1] (a fraction)")
        for key in ("peak_epoch", "completed_epochs"):
            v = r.get(key)
            if v is not None and (_num(v) is None or not math.isfinite(v) or v < 0):
                _fail(source, f"methods.{name}.{key} is {v!r}, not a number >= 0")
        if r.get("status") is not None and not isinstance(r["status"], str):
            _fail(source, f"methods.{name}.status is {r['status']!r}, not a string")
        for key in ("config", "data", "peak_test_acc_ci", "gain_over_gd"):
            if r.get(key) is not None and not isinstance(r[key], dict):
                _fail(source, f"methods.{name}.{key} is not an object")
        for key in ("peak_test_acc_ci", "gain_over_gd"):
            for bound in ("mean", "lo", "hi"):
                v = (r.get(key) or {}).get(bound)
                if v is not None and _num(v) is None:
                    _fail(source, f"methods.{name}.{key}.{bound} is {v!r}, not a number or null")


def load_results(path) -> dict:
    """Read and validate a results file (:func:`read_results_file`, :func:`validate_results`):
    the command line calls it before any work, so a malformed file is an input error (exit
    status 2, one line), never a claim that fails."""
    data = read_results_file(path)
    validate_results(data, str(path))
    return data


def proxy_summary(data: dict, source: str = "") -> str | None:
    """One line for a several-seed results file (schema ``...+seeds``, e.g. the CPU proxy):
    per method the mean peak test accuracy with its 95% interval over seeds and the paired
    gain over SGD with its interval. None when ``data`` is not such a file."""
    if not str(data.get("schema", "")).endswith("+seeds") or not isinstance(data.get("methods"), dict):
        return None
    ms = data["methods"]
    parts = []
    for name, r in ms.items():
        ci, g = r.get("peak_test_acc_ci") or {}, r.get("gain_over_gd")
        if _num(ci.get("mean")) is None:
            continue
        text = f"{NAMES.get(name, name)} {_pct(ci['mean'])}% {_bounds(ci, _pct)}"
        if g and _num(g.get("mean")) is not None:
            text += f" (vs SGD {100 * g['mean']:+.1f} pp {_bounds(g, lambda v: f'{100 * v:+.1f}')})"
        parts.append(text)
    first = next(iter(ms.values()), {})
    conf, info, model = first.get("config") or {}, first.get("data") or {}, first.get("model") or {}
    n_seeds = len(data.get("seeds_run") or data.get("seeds") or [])
    gd = ms.get(BASE) or {}
    sgd_fell = ""
    if gd.get("seeds"):
        drops = [s["peak_test_acc"] - s["final_test_acc"] for s in gd["seeds"].values()
                 if _num(s.get("peak_test_acc")) is not None and _num(s.get("final_test_acc")) is not None]
        if drops:
            sgd_fell = f"; SGD's test accuracy falls {_pct(float(np.mean(drops)))} pp from its peak by the last epoch"
    return (f"CPU proxy ({model.get('arch', conf.get('arch'))} on {info.get('n_train')} CIFAR-10 images, "
            f"{conf.get('noise_kind')} noise {conf.get('noise_rate')}, {conf.get('epochs')} epochs, rho "
            f"{conf.get('rho')}, {n_seeds} seeds; not ResNet-18, not the paper's setting; {source}): peak test "
            f"accuracy, mean [95% CI over seeds]: {'; '.join(parts)}{sgd_fell}")


#: The CPU study (``linsam cifar-study``, issue 20): both depths, every method tuned on validation.
CPU_STUDY_RESULTS = CPU_PROXY_RESULTS.parent / "study" / "study.json"
#: How the paper's numbers are reported (a secondary source; THEORY.md).
PAPER_SOURCE = "the paper's table (ResNet-18, best test accuracy), as reported by a secondary source"


def study_summary(rep: dict, source: str = "") -> str:
    """The CPU study beside the paper: per depth, gains over tuned SGD (validation-selected) and the
    fractions of 1-SAM's gain kept by J-SAM, L-SAM and the regulariser, with the paper's values, and
    1-SAM / J-SAM against the best simple control (TOST)."""
    pg, pf = rep.get("paper_gains") or {}, rep.get("paper_fractions") or {}
    parts = []
    for d, z in (rep.get("depths") or {}).items():
        rows = z.get("rows") or {}

        def gain(m):
            g = (rows.get(m) or {}).get("gain_over_tuned_sgd")
            if not g or _num(g.get("mean")) is None:
                return "n/a"
            paper = f"; paper {pg[m]:+.1f}" if m in pg else ""
            return f"{100 * g['mean']:+.1f} pp {_bounds(g, lambda v: f'{100 * v:+.1f}')}{paper}"

        def frac(m):
            f = (z.get("fractions_of_1sam_gain") or {}).get(m)
            if not f or _num(f.get("estimate")) is None:
                return "n/a"
            base = m.replace("_at_1sam", "")
            paper = f"; paper {pf[base]:.2f}" if base in pf else ""
            return f"{f['estimate']:.2f} {_bounds(f, lambda v: f'{v:.2f}')}{paper}"

        best = z.get("best_simple_control")
        tost = "; ".join(f"{NAMES.get(k.replace('_at_1sam', ''), k)}{' at 1-SAM rho' if k.endswith('_at_1sam') else ''} "
                         f"minus {NAMES.get(v.get('vs'), v.get('vs'))} {100 * v['mean']:+.1f} pp: {v['verdict']}"
                         for k, v in (z.get("tost") or {}).items() if _num(v.get("mean")) is not None)
        parts.append(f"depth {d}: gain over tuned SGD (validation-selected): 1-SAM {gain('one_sam')}, J-SAM "
                     f"{gain('jsam')}, L-SAM {gain('lsam')}, J-reg-fixed {gain('jreg_fixed')}; fraction of 1-SAM's "
                     f"gain: J-SAM {frac('jsam_at_1sam') if 'jsam_at_1sam' in (z.get('fractions_of_1sam_gain') or {}) else frac('jsam')}, "
                     f"L-SAM {frac('lsam_at_1sam') if 'lsam_at_1sam' in (z.get('fractions_of_1sam_gain') or {}) else frac('lsam')}, "
                     f"J-reg-fixed {frac('jreg_fixed')}; best simple control {NAMES.get(best, best)}: {tost}")
    cfg = rep.get("config") or {}
    return (f"CPU study ({source}; MLP width {cfg.get('width')}, {cfg.get('n_train')} training + {cfg.get('n_val')} "
            f"validation images, {cfg.get('epochs')} epochs, report seeds {cfg.get('report_seeds')}; beside "
            f"{PAPER_SOURCE}): " + " | ".join(parts))


def _bounds(ci: dict, fmt) -> str:
    """``[lo, hi]``, or why there is none (a bound is null in strict JSON where it is undefined:
    one seed gives no interval)."""
    lo, hi = ci.get("lo"), ci.get("hi")
    if _num(lo) is None or _num(hi) is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "[no interval: one seed]" if ci.get("n") == 1 else "[no interval]"
    return f"[{fmt(lo)}, {fmt(hi)}]"


def measure(ctx, cfg: dict) -> dict:
    path = ctx.cifar_results
    if path is None:
        out = dict(available=False, reason="ResNet-18: not run here (no --cifar-results FILE given; the ResNet-18 "
                                            "runs need a GPU: `linsam cifar`)")
        proxy = cfg.get("cpu_proxy") or default_proxy()
        if proxy and Path(proxy).is_file():
            try:
                data = read_results_file(proxy)
                out["proxy"] = proxy_summary(data, _display(proxy))
                out["proxy_source"] = _display(proxy)
            except ValueError as err:  # a damaged shipped file must not hide the verdict: say so
                out["proxy"] = f"CPU proxy unreadable ({err})"
        study = Path(cfg.get("cpu_study") or (Path(default_proxy()).parent / "study" / "study.json"))
        if study.is_file():
            try:
                out["study"] = study_summary(read_results_file(study), _display(study))
            except (ValueError, KeyError, TypeError) as err:
                out["study"] = f"CPU study unreadable ({err})"
        return out
    try:
        return read_results(read_results_file(path), str(path))
    except ValueError as err:
        return dict(available=False, error=str(err))


def _display(path) -> str:
    """``path`` relative to the repository root where it lies inside it."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(CPU_PROXY_RESULTS.parents[2]))
    except ValueError:
        return str(p)


def _num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def read_results(data: dict, source: str = "") -> dict:
    """The numbers C8 needs from a results JSON (aggregate, or a single method's file).

    ``ValueError`` when the object does not follow the schema (:func:`validate_results`)."""
    validate_results(data, source)
    methods = {}
    table = data["methods"]
    for old, new in LEGACY_METHOD_KEYS.items():  # an old file: its keys mapped (a new key wins, the old dropped)
        if old in table:
            table = {(new if k == old else k): v for k, v in table.items() if not (k == old and new in table)}
    for name, r in table.items():
        if not isinstance(r, dict):
            raise ValueError(f"--cifar-results {source}: methods.{name} is not an object")
        conf = r.get("config") or {}
        data_info = r.get("data") or {}
        peak = r.get("peak_test_acc")
        methods[name] = dict(peak=peak, epoch=r.get("peak_epoch"), epochs_done=r.get("completed_epochs"),
                             epochs=conf.get("epochs"), status=r.get("status"), noise_rate=conf.get("noise_rate"),
                             noise_kind=conf.get("noise_kind"), rho=conf.get("rho"), preset=r.get("preset"),
                             realised=data_info.get("realised_rate"), n_train=data_info.get("n_train"),
                             config={k: conf[k] for k in PAPER_SETTING if k in conf},
                             train_subset=data_info.get("train_subset"))
    missing = [m for m in (BASE, SAM) if m not in methods or methods[m]["peak"] is None]
    if missing:
        return dict(available=False, reason=f"{source}: no peak test accuracy for {', '.join(missing)}",
                    methods=methods)
    return dict(available=True, source=source, schema=data.get("schema"), device=data.get("device"),
                comparable=data.get("comparable"), methods=methods,
                not_comparable=setting_differences(methods, data.get("comparable")),
                seeds_summary=proxy_summary(data, source))


def setting_differences(methods: dict, comparable=None) -> list[str]:
    """Why the gd (SGD) / one_sam runs are not the paper's setting (empty: they are, as far as recorded)."""
    out = []
    if comparable is False:
        out.append("the methods ran in different settings (comparable: false)")
    for name in (BASE, SAM):
        r = methods.get(name) or {}
        label = NAMES.get(name, name)
        for k, want in PAPER_SETTING.items():
            got = (r.get("config") or {}).get(k)
            if got is None:
                continue
            numeric = _num(got) is not None and _num(want) is not None
            if not (math.isclose(got, want, rel_tol=1e-9) if numeric else got == want):
                out.append(f"{label}: {k} {got!r} (paper: {want!r})")
        n = r.get("n_train")
        if r.get("train_subset") or (_num(n) is not None and n < PAPER_N_TRAIN):
            out.append(f"{label}: {n} training images (paper: {PAPER_N_TRAIN})")
        if r.get("status") not in (None, "completed"):
            out.append(f"{label}: run {r.get('status')} after {r.get('epochs_done')}/{r.get('epochs')} epochs")
    return out


def evaluate(m: dict, cfg: dict) -> ClaimResult:
    paper_gain = float(cfg.get("paper_gain", 0.17))
    min_gain = float(cfg.get("min_gain", 0.10))
    expected = (f"1-SAM peak - SGD peak ~ +{100 * paper_gain:.0f} pp (paper: 69.5% vs 52.5%); holds if >= "
                f"+{100 * min_gain:.0f} pp")
    if m.get("error"):  # a file was named and cannot be read: an error of the run, not a verdict on the claim
        return ClaimResult.from_spec(SPEC, regime="CIFAR-10 results file", measured=f"error: {m['error']}",
                                     estimate=None, ci=None, verdict=FAILS, details=m, expected=expected,
                                     must_hold=True)
    if not m.get("available"):
        measured = m.get("reason", "not available")
        if m.get("proxy"):
            measured = f"{measured}. {m['proxy']}"
        if m.get("study"):
            measured = f"{measured}. {m['study']}"
        return ClaimResult.from_spec(SPEC, regime="CIFAR-10, ResNet-18, 30% symmetric noise (GPU)",
                                     measured=measured, estimate=None, ci=None,
                                     verdict=NOT_RUN, details=m, expected=expected)
    ms = m["methods"]
    gain = float(ms[SAM]["peak"]) - float(ms[BASE]["peak"])
    ok = math.isfinite(gain) and gain >= min_gain
    accs = ", ".join(f"{NAMES.get(k, k)} {100 * float(v['peak']):.1f}% (epoch {v['epoch']})" for k, v in ms.items()
                     if v["peak"] is not None)
    measured = f"peak test accuracy: {accs}; 1-SAM - SGD = {100 * gain:+.1f} pp (one run per method, no CI)"
    if m.get("seeds_summary"):  # several seeds: means with intervals
        measured = m["seeds_summary"]
    base = ms[BASE]
    partial = [k for k, v in ms.items() if v.get("status") not in (None, "completed")]
    realised = f" (realised {base['realised']:.3f})" if isinstance(base.get("realised"), (int, float)) else ""
    n_train = f" ({base['n_train']} training images)" if base.get("n_train") else ""
    preset = f", preset {base['preset']}" if base.get("preset") else ""
    arch = "ResNet-18" if base.get("config", {}).get("arch", "resnet") == "resnet" else "CPU proxy network"
    regime = (f"CIFAR-10{n_train}, {arch}, {base.get('noise_kind') or 'symmetric'} noise {base.get('noise_rate')}"
              f"{realised}, {base.get('epochs_done')}/{base.get('epochs')} epochs, rho {ms[SAM].get('rho')}{preset}; "
              f"device {m.get('device') or 'unknown'}; source {m['source']}")
    if m.get("comparable") is False:
        regime += "; methods NOT comparable (different data or settings)"
    if partial:
        regime += f"; runs not completed: {', '.join(partial)}"
    if base.get("noise_rate") not in (None, 0.3):
        regime += " (NOT the paper's 30% noise)"
    differences = m.get("not_comparable") or []
    if differences:  # the claim is about the paper's setting: another setting can neither hold nor fail it
        return ClaimResult.from_spec(
            SPEC, regime=regime, estimate=gain, ci=None, verdict=NOT_COMPARABLE, details=m, expected=expected,
            measured=f"not comparable to the paper's setting: {'; '.join(differences)}. Measured there: {measured}")
    return ClaimResult.from_spec(SPEC, regime=regime, measured=measured, estimate=gain, ci=None,
                                 verdict=HOLDS if ok else FAILS, details=m, expected=expected)
