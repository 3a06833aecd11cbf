"""The report of a ``linsam reproduce`` run: ``report.md`` (for people) and ``report.json`` (for tools).

Both are written atomically (temp file in the same directory + ``os.replace``), so a reader
never sees half a report, and a failed run leaves the previous report in place.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import linsam
from linsam._src.atomic import write_text_atomic
from reproduction._result import FAILS, HOLDS, NOT_COMPARABLE, NOT_RUN, ClaimResult, _jsonable

__all__ = ["Run", "write_atomic", "claims_table", "claims_text_table", "render_markdown", "write_report"]


@dataclasses.dataclass
class Run:
    """Everything a report shows."""

    mode: str
    seed: int
    claims: list[ClaimResult]
    derivations: list[dict]
    figures: list[Any]  # figures.FigureOutput
    sweeps: list[Any]  # SimConfig
    settings: dict
    timings: dict
    errors: list[str]
    total_s: float
    cifar_results: str | None = None
    out_dir: str = "."

    @property
    def derivations_hold(self) -> bool:
        return all(d["holds"] for d in self.derivations)

    @property
    def exit_status(self) -> int:
        """0 only if every must-hold claim holds, every proof went through and nothing crashed."""
        ok = all(c.ok for c in self.claims) and self.derivations_hold and not self.errors
        return 0 if ok else 1


def write_atomic(path: Path, text: str) -> None:
    write_text_atomic(path, text)


def _cell(text: Any) -> str:
    """A Markdown table cell: pipes escaped, newlines flattened."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _verdict(c: ClaimResult) -> str:
    v = {HOLDS: "**holds**", FAILS: "**FAILS**", NOT_RUN: "not run here", NOT_COMPARABLE: "not comparable"}[c.verdict]
    return v + (" (must hold)" if c.must_hold else "")


def _ci_text(c: ClaimResult) -> str:
    if c.ci is None:
        return ""
    lo, hi = c.ci

    def f(x):
        return "inf" if math.isinf(x) and x > 0 else "-inf" if math.isinf(x) else f"{x:.3g}"

    return f" — headline {f(c.estimate) if c.estimate is not None else 'n/a'}, 95% CI [{f(lo)}, {f(hi)}]"


def claims_table(claims: list[ClaimResult]) -> str:
    lines = ["| claim | where in the paper | regime | expected | measured (95% CI) | verdict |",
             "|---|---|---|---|---|---|"]
    for c in claims:
        lines.append("| " + " | ".join(_cell(x) for x in (
            f"**{c.id}** {c.claim}", c.where, c.regime, c.expected, c.measured + _ci_text(c), _verdict(c))) + " |")
    return "\n".join(lines)


def claims_text_table(claims: list[ClaimResult], measured_width: int | None = None) -> str:
    """The claims as a plain-text table for a terminal: columns sized to their longest entry and
    separated by two spaces, so no two ever run together (a verdict "not comparable" and a
    must-hold "no" stay apart); ``measured`` is cut at ``measured_width`` characters if given."""
    head = ("claim", "verdict", "must hold", "measured")
    rows = [(c.id, c.verdict, "yes" if c.must_hold else "no", _cell(c.measured)) for c in claims]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]

    def line(r) -> str:
        text = r[3] if measured_width is None or len(r[3]) <= measured_width else r[3][:measured_width - 3] + "..."
        return "  ".join(x.ljust(w) for x, w in zip(r[:3], widths)) + "  " + text

    return "\n".join(line(r).rstrip() for r in [head, *rows])


def render_markdown(run: Run) -> str:
    n_hold = sum(c.verdict == HOLDS for c in run.claims)
    must = [c for c in run.claims if c.must_hold]
    status = ("every must-hold claim holds and every derivation is proved" if run.exit_status == 0 else
              "NOT every must-hold claim holds / derivation is proved / step ran (see below)")
    lines = [
        "# linsam reproduce: report",
        "",
        f"*Why is SAM Robust to Label Noise?* (Baek, Kolter, Raghunathan, ICLR 2024): every claim as an executable "
        f"check, every figure with its analytic prediction over the measurement.",
        "",
        f"- linsam {linsam.__version__}, mode **{run.mode}**, seed {run.seed}, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, Python {platform.python_version()} on {platform.machine()} "
        f"({os.cpu_count()} CPUs), total {run.total_s:.1f} s",
        f"- claims: {n_hold}/{len(run.claims)} hold; must-hold: {sum(c.verdict == HOLDS for c in must)}/{len(must)}; "
        f"derivations: {sum(d['holds'] for d in run.derivations)}/{len(run.derivations)} proved",
        f"- exit status **{run.exit_status}**: {status}",
        "",
        "## Claims",
        "",
        claims_table(run.claims),
        "",
        "Verdicts: **holds** = the measurement establishes the claim (for a statistical claim, the 95% CI over "
        "seeds lies on the claim's side); **FAILS** = it does not (the estimate contradicts the claim, or the CI is "
        "too wide to tell: the measured text says which); *not run here* = no measurement on this machine (never "
        "counted as holding); *not comparable* = measured, but in a setting other than the paper's (the measured text "
        "says why; never counted as holding or failing). CIs: Student-t over seeds for paired differences, percentile bootstrap over seeds "
        "for fractions. Must-hold claims decide the exit status; the others are reported measurements.",
        "",
    ]
    if run.errors:
        lines += ["## Errors", ""] + [f"- {_cell(e)}" for e in run.errors] + [""]
    lines += ["## Derivations (SymPy proofs, `linsam derive --check`)", "",
              "| result | title | claims proved | time |", "|---|---|---|---|"]
    for d in run.derivations:
        proved = sum(c["holds"] for c in d["claims"])
        lines.append(f"| {d['name']} | {_cell(d['title'])} | {proved}/{len(d['claims'])}"
                     f"{'' if d['holds'] else ' **NOT ALL PROVED**'} | {d['seconds']:.1f} s |")
    lines += ["", "## Figures", ""]
    for f in run.figures:
        png = next((p for p in f.paths if p.endswith(".png")), None)
        rel = os.path.relpath(png, run.out_dir) if png else ""
        lines += [f"### {f.id}. {f.title}", "", f"![{f.id}]({rel})", "", f"*{f.caption}*", ""]
    lines += ["## Sweeps", "", "Every simulation is a shipped `linsam.simulate` config (rerun one on its own with "
              "`linsam simulate --config NAME`; this run's `--seed` shifts `seed_offset` by 1000 x seed).", "",
              "| sweep | model | methods | rho | seeds | n, d | steps | lr | init | noise | time |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    try:
        from linsam.simulate import shipped_configs

        shipped = set(shipped_configs())
    except Exception:  # pragma: no cover - the listing is only a label
        shipped = set()
    for c in run.sweeps:
        t = run.timings.get(f"sweep {c.name}", float("nan"))
        why = "its selection seeds, C5" if c.name.endswith("_c5select") else "[noise] replaced, F7"
        name = f"`{c.name}`" if c.name in shipped else f"`{c.name}` (variant of a shipped config: {why})"
        nz = f"{c.noise.kind} {c.noise.rate:g}"
        lines.append(f"| {name} | {c.model}{f' h={c.hidden}' if c.model == 'dln' else ''} | "
                     f"{', '.join(c.methods)} | {', '.join(f'{r:g}' for r in c.rhos)} | {c.num_seeds} "
                     f"(from {c.seed_offset}) | {c.n}, {c.data.d} | {c.steps} | {c.lr:g} | {c.init_scale:g} | {nz} | "
                     f"{t:.1f} s |")
    lines += ["", "## Rerun a part with your own settings", "",
              "- `linsam check C4 --quick --config my_c4.toml`: settings as in the `[C4]` entry of "
              "`linsam/configs/paper/checks.toml` (tables `[common]`, `[tiny]`, `[quick]`, `[full]`, or flat keys).",
              "- `linsam figures F2 --full --out DIR --config my_f2.toml`; `linsam reproduce --config C4=my_c4.toml`.",
              "- `linsam simulate --config reproduce_linear_quick`: one sweep on its own.", "",
              "## Timings", "", "| step | seconds |", "|---|---|"]
    for k, v in run.timings.items():
        lines.append(f"| {_cell(k)} | {v:.1f} |")
    lines.append("")
    return "\n".join(lines)


def to_json(run: Run) -> dict:
    return _jsonable(dict(
        linsam_version=linsam.__version__,
        mode=run.mode,
        seed=run.seed,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        platform=dict(python=platform.python_version(), machine=platform.machine(), cpus=os.cpu_count()),
        exit_status=run.exit_status,
        total_s=run.total_s,
        cifar_results=run.cifar_results,
        claims=[c.to_dict() for c in run.claims],
        derivations=run.derivations,
        figures=[f.to_dict() for f in run.figures],
        sweeps=[c.to_dict() for c in run.sweeps],
        config=run.settings,
        timings=run.timings,
        errors=run.errors,
    ))


def write_report(run: Run, out_dir) -> tuple[Path, Path]:
    out = Path(out_dir)
    md, js = out / "report.md", out / "report.json"
    write_atomic(js, json.dumps(to_json(run), indent=1, allow_nan=False) + "\n")
    write_atomic(md, render_markdown(run))
    return md, js
