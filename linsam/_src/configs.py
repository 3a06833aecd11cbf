r"""Sweep configs by composition: one TOML file per regime, resolved into a :class:`SimConfig`.

A shipped file ``linsam/configs/<regime>.toml`` (or any user file) holds:

- the **base** settings: :class:`~linsam.simulate.SimConfig`'s top-level fields and its
  ``[data]`` (:class:`~linsam.data.MixtureSpec`), ``[noise]`` (:class:`~linsam.data.NoiseSpec`)
  and ``[meta]`` tables;
- ``[modes.<mode>]``: what changes with the size of the run (``tiny`` for the test suite,
  ``quick``, ``full``);
- ``[seeds.<set>]``: seed sets (``select``: the seeds a radius is chosen on; ``report``:
  fresh seeds the chosen radius is reported on);
- ``[variants.<name>]``: controls and variants of the regime; ``seeds = "<set>"`` /
  ``mode = "<mode>"`` inside a variant picks the seed set / mode it runs on;
- ``extends = "<file>"``: start from another file's base, modes and seed sets (not its
  variants); a shipped name or a path relative to this file.

A run is ``base <- mode <- seed set <- variant``: each table updates the one before it key by
key (tables such as ``[data]`` merge, other values are replaced).

**Rules.** A number field given as a string is a *rule*: an arithmetic expression over the
config's own number fields, e.g. ``sigma = "1/sqrt(d)"``, ``mean_norm = "2*sigma"`` in
``[data]``. It is evaluated after the tables are merged (so a mode that changes ``d`` changes
``sigma``), by a small evaluator that knows numbers, names of number fields (the rule's own
table first, then the top level), ``+ - * / **``, ``sqrt``, ``log``, ``exp`` and ``pi``, and
nothing else (no ``eval``).

**Required.** A run must set ``methods`` and ``rhos`` (:data:`REQUIRED`; from any of
its tables or the file it extends): an empty or description-only file is refused, naming them,
instead of silently running the defaults.

**Names.** A run of file ``F`` is named ``F_<mode>``, ``F_<set>``, ``F_<variant>`` (the
selections made, in that order) unless a selected table sets ``name``; a table picked only
through a variant (``seeds = "report"``) does not lend its name. Every shipped run is listed by
:func:`shipped_configs` and loads by its name (``load_config("reproduce_linear_quick")``) or
by an explicit reference ``"reproduce_linear@quick"`` (``@`` then comma-separated table names)
or by keywords (``load_config("reproduce_linear", mode="quick")``).

Errors name the file and the field, before any work starts.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import functools
import math
import operator
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["load_config", "shipped_configs", "configs_dir", "read_toml", "file_modes", "resolve"]

RESERVED = ("modes", "seeds", "variants", "extends")
#: What every config must set itself (after ``extends``, modes, seed sets and variants are
#: applied): what it runs. The rest has defaults (:class:`~linsam.simulate.SimConfig`).
REQUIRED = ("methods", "rhos")
_NAME_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


def configs_dir() -> Path:
    """``linsam/configs``: the shipped regime files (package data)."""
    return Path(__file__).resolve().parent.parent / "configs"


def read_toml(path: str | os.PathLike) -> dict:
    """Parse a TOML file; a missing file or malformed TOML is a ValueError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {str(path)!r} not found")
    with open(p, "rb") as fh:
        try:
            return tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{p}: not valid TOML: {err}") from None


# ----------------------------------------------------------------------------- files and tables


def _merge(base: dict, over: Mapping) -> dict:
    """``base`` updated by ``over`` key by key; nested tables merge."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _shipped_file(stem: str) -> Path | None:
    p = configs_dir() / f"{stem}.toml"
    return p if p.is_file() else None


def _is_path(ref: str) -> bool:
    return ref.endswith(".toml") or "/" in ref or os.sep in ref or Path(ref).is_file()


def _read_doc(path: Path, _seen: tuple = ()) -> dict:
    """The file's tables with ``extends`` applied (the parent's variants are not inherited)."""
    path = path.resolve()
    if path in _seen:
        raise ValueError(f"{path}: extends cycle: {' -> '.join(str(p) for p in (*_seen, path))}")
    doc = read_toml(path)
    for key in ("modes", "seeds", "variants"):
        if key in doc and not (isinstance(doc[key], dict) and all(isinstance(t, dict) for t in doc[key].values())):
            raise ValueError(f"{path}: {key} must hold tables ([{key}.<name>]), got {doc[key]!r}")
    parent = doc.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise ValueError(f"{path}: extends must be a file name, got {parent!r}")
        ppath = _shipped_file(parent) if not _is_path(parent) else (path.parent / parent)
        if ppath is None or not ppath.is_file():
            raise ValueError(f"{path}: extends {parent!r}: no such config file")
        base = _read_doc(ppath, (*_seen, path))
        base.pop("variants", None)
        base.pop("name", None)
        doc = _merge(base, doc)
    names = [n for key in ("modes", "seeds", "variants") for n in doc.get(key, {})]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{path}: table name(s) {dup} used twice among modes, seeds and variants")
    return doc


@functools.lru_cache(maxsize=None)
def _shipped_doc(stem: str) -> dict:
    return _read_doc(_shipped_file(stem))


def _runs(doc: dict) -> list[tuple]:
    """Every run of a file: ``(mode, seeds, variant)`` as a user would select them."""
    modes = list(doc.get("modes", {})) or [None]
    sets = list(doc.get("seeds", {})) or [None]
    out = [(m, s, None) for m in modes for s in sets]
    for v, table in doc.get("variants", {}).items():
        ms = [None] if "mode" in table else modes
        ss = [None] if "seeds" in table else sets
        out += [(m, s, v) for m in ms for s in ss]
    return out


def _run_name(doc: dict, stem: str, mode, seeds, variant) -> str:
    name = None
    for key, sel in (("modes", mode), ("seeds", seeds), ("variants", variant)):
        if sel is not None and "name" in doc.get(key, {}).get(sel, {}):
            name = doc[key][sel]["name"]
    if name is None:
        name = "_".join([doc.get("name", stem)] + [s for s in (mode, seeds, variant) if s is not None])
    return name


@functools.lru_cache(maxsize=None)
def _index() -> dict[str, tuple]:
    """Shipped run name -> ``(file stem, mode, seeds, variant)``."""
    out: dict[str, tuple] = {}
    for p in sorted(configs_dir().glob("*.toml")):
        doc = _shipped_doc(p.stem)
        for run in _runs(doc):
            name = _run_name(doc, p.stem, *run)
            if name in out:
                raise ValueError(f"{p}: run name {name!r} is also the name of {out[name]}")
            out[name] = (p.stem, *run)
    return out


def shipped_configs() -> list[str]:
    """Names of every shipped run (each loads with :func:`load_config`)."""
    return sorted(_index())


def file_modes(ref: str | os.PathLike) -> tuple[str, ...]:
    """Modes of the config file ``ref`` names (a shipped file stem or a path); ``()`` when
    ``ref`` already picks a run (a run name, an ``@`` reference) or the file has no modes."""
    ref = str(ref)
    if "@" in ref or ref in _index():
        return ()
    path = Path(ref) if _is_path(ref) else _shipped_file(ref)
    if path is None or not path.is_file():
        return ()
    doc = _shipped_doc(path.stem) if path.parent.resolve() == configs_dir() else _read_doc(path)
    return tuple(doc.get("modes", {}))


# ----------------------------------------------------------------------------- rules

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}
_FUNCS = {"sqrt": math.sqrt, "log": math.log, "exp": math.exp}
_CONSTS = {"pi": math.pi}
_RULE_HELP = "rules use numbers, number fields of the config, + - * / **, sqrt, log, exp and pi"


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def evaluate_rule(text: str, lookup, field: str) -> float:
    r"""Value of the rule ``text`` (e.g. ``"1/sqrt(d)"``); ``lookup(name)`` gives a field's number.

    Only numbers, names, ``+ - * / **`` (also unary ``-``/``+``), ``sqrt``, ``log``, ``exp``
    and ``pi`` are allowed; anything else is a ValueError naming ``field``.
    """
    if len(text) > 200:
        raise ValueError(f"{field}: rule longer than 200 characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"{field}: {text!r} is not a number or a rule ({_RULE_HELP})") from None

    def ev(node) -> float:
        if isinstance(node, ast.Constant) and _is_number(node.value):
            return float(node.value)
        if isinstance(node, ast.Name):
            return _CONSTS[node.id] if node.id in _CONSTS else float(lookup(node.id))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            x = ev(node.operand)
            return -x if isinstance(node.op, ast.USub) else x
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS
                and len(node.args) == 1 and not node.keywords):
            return _FUNCS[node.func.id](ev(node.args[0]))
        raise ValueError(f"{field}: rule {text!r}: {ast.unparse(node)!r} is not allowed ({_RULE_HELP})")

    try:
        value = ev(tree.body)
    except (ArithmeticError, ValueError) as err:
        if isinstance(err, ValueError) and str(err).startswith(field):
            raise
        raise ValueError(f"{field}: rule {text!r} cannot be evaluated: {err}") from None
    if not math.isfinite(value):
        raise ValueError(f"{field}: rule {text!r} gives {value}")
    return value


def _field_kinds() -> dict[str, dict[str, Any]]:
    """Defaults of the fields per table (``""``: top level), to tell number fields from others."""
    from linsam._src.data import MixtureSpec, NoiseSpec
    from linsam._src.engine.config import SimConfig

    top = {f.name: f.default for f in dataclasses.fields(SimConfig)}
    return {"": top, "data": dict(MixtureSpec._field_defaults), "noise": dict(NoiseSpec._field_defaults)}


def _check_types_and_apply_rules(raw: dict) -> dict:
    """Check each known field's type (naming it) and replace rules by their values."""
    kinds = _field_kinds()
    out = copy.deepcopy(raw)
    for table in ("data", "noise", "meta"):
        if table in out and not isinstance(out[table], dict):
            raise ValueError(f"{table} must be a table ([{table}]), got {out[table]!r}")
    for key, expect in (("methods", str), ("rhos", None)):
        if key in out:
            v = out[key]
            ok = isinstance(v, list) and all(isinstance(x, str) if expect is str else _is_number(x) for x in v)
            if key == "methods" and isinstance(v, str):
                ok = True  # one method
            if not ok:
                what = "a list of method names" if expect is str else "a list of numbers, e.g. rhos = [0.5, 1.0]"
                raise ValueError(f"{key} must be {what}, got {v!r}")

    def scope(table: str) -> dict:
        return out if table == "" else out.get(table, {})

    def lookup_in(table: str, visiting: tuple):
        def lookup(name: str):
            for t in ((table, "") if table else ("",)):
                d = scope(t)
                if name in d and not isinstance(d[name], (dict, list)):
                    return value_of(t, name, visiting)
            known = sorted({k for t in (table, "") for k, v in scope(t).items()
                            if _is_number(v) or (isinstance(v, str) and k in kinds.get(t, {})
                                                 and _is_number(kinds[t][k]))})
            raise ValueError(f"unknown name {name!r}; number fields here: {known}")
        return lookup

    def value_of(table: str, key: str, visiting: tuple = ()):
        d = scope(table)
        v = d[key]
        label = f"{table}.{key}" if table else key
        default = kinds.get(table, {}).get(key, None)
        if isinstance(v, str) and _is_number(default):
            if (table, key) in visiting:
                raise ValueError(f"{label}: rule {v!r} refers to itself (through {[k for _, k in visiting]})")
            x = evaluate_rule(v, lookup_in(table, (*visiting, (table, key))), label)
            if isinstance(default, int):
                if x != round(x):
                    raise ValueError(f"{label}: rule {v!r} gives {x}, not an integer")
                x = int(round(x))
            d[key] = x
            return x
        if not _is_number(v):
            raise ValueError(f"{label} is not a number: {v!r}")
        return v

    for table in ("", "data", "noise"):
        for key in list(scope(table)):
            if key not in kinds[table]:
                continue  # unknown keys are refused by SimConfig.from_dict, by name
            v, default = scope(table)[key], kinds[table][key]
            label = f"{table}.{key}" if table else key
            if _is_number(default):
                if isinstance(v, str):
                    value_of(table, key)
                elif not _is_number(v):
                    raise ValueError(f"{label} must be a number or a rule such as \"1/sqrt(d)\", got {v!r}")
            elif isinstance(default, bool) and not isinstance(v, bool):
                raise ValueError(f"{label} must be true or false, got {v!r}")
            elif isinstance(default, str) and not isinstance(v, str):
                raise ValueError(f"{label} must be a string, got {v!r}")
    return out


# ----------------------------------------------------------------------------- resolution


def resolve(ref: str | os.PathLike, *, mode: str | None = None, seeds: str | None = None) -> tuple[Path, dict]:
    """``(file, mapping)``: the run ``ref`` names, composed and with its rules evaluated (the
    mapping :meth:`SimConfig.from_dict` takes). See the module docstring for ``ref``."""
    text = os.fspath(ref)
    selectors: list[str] = []
    variant = None
    if "@" in text and not Path(text).is_file():
        text, sel = text.rsplit("@", 1)
        selectors = [s.strip() for s in sel.split(",") if s.strip()]
        if not selectors:
            raise ValueError(f"config reference {os.fspath(ref)!r}: nothing after '@'")
    if _is_path(text):
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"config file {text!r} not found")
        doc, stem = _read_doc(path), path.stem
    elif text in _index() and not selectors and mode is None and seeds is None:
        stem, mode, seeds, variant = _index()[text]
        path, doc = _shipped_file(stem), _shipped_doc(stem)
    elif _shipped_file(text) is not None:
        stem, path = text, _shipped_file(text)
        doc = _shipped_doc(stem)
    else:
        raise ValueError(f"config {text!r} not found: not a file, and not a shipped config "
                         f"(shipped: {', '.join(shipped_configs())})")
    tables = {key: doc.get(key, {}) for key in ("modes", "seeds", "variants")}
    try:
        for sel in selectors:
            kind = next((k for k, t in tables.items() if sel in t), None)
            if kind is None:
                raise ValueError(f"no table {sel!r}; modes: {list(tables['modes'])}, seed sets: "
                                 f"{list(tables['seeds'])}, variants: {list(tables['variants'])}")
            given = {"modes": mode, "seeds": seeds, "variants": variant}[kind]
            if given is not None and given != sel:
                raise ValueError(f"{sel!r} and {given!r} both pick the {kind[:-1] if kind != 'seeds' else 'seed set'}")
            mode, seeds, variant = (sel if kind == "modes" else mode, sel if kind == "seeds" else seeds,
                                    sel if kind == "variants" else variant)
        if variant is not None and variant not in tables["variants"]:
            raise ValueError(f"variant {variant!r} is not defined here; defined: {list(tables['variants']) or 'none'}")
        vt = dict(tables["variants"].get(variant, {}))
        implied_mode, implied_seeds = vt.pop("mode", None), vt.pop("seeds", None)
        run_mode, run_seeds = mode or implied_mode, seeds or implied_seeds
        for kind, sel, label in (("modes", run_mode, "mode"), ("seeds", run_seeds, "seed set")):
            if sel is None and tables[kind]:
                first = next(iter(tables[kind]))
                raise ValueError(f"pick a {label}: one of {list(tables[kind])} (e.g. {stem}@{first} or "
                                 f"{'mode' if kind == 'modes' else 'seeds'}={first!r})")
            if sel is not None and sel not in tables[kind]:
                raise ValueError(f"{label} {sel!r} is not defined here; defined: {list(tables[kind]) or 'none'}")
        name = _run_name(doc, stem, mode, seeds, variant)
        raw = {k: v for k, v in doc.items() if k not in RESERVED}
        for table in (tables["modes"].get(run_mode), tables["seeds"].get(run_seeds), vt):
            if table:
                raw = _merge(raw, {k: v for k, v in table.items() if k != "name"})
        raw["name"] = name
        if not isinstance(name, str) or not _NAME_OK.fullmatch(name) or ".." in name:
            raise ValueError(f"name must be a plain file name (letters, digits, '_', '.', '-'; no '/' or '..'), "
                             f"got {name!r}")
        return path, _check_types_and_apply_rules(raw)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None


def load_config(name_or_path: str | os.PathLike, *, mode: str | None = None, seeds: str | None = None):
    """The :class:`~linsam.simulate.SimConfig` of a run.

    Args:
      name_or_path: a shipped run name (:func:`shipped_configs`, e.g. ``"reproduce_linear_quick"``,
        ``"iso_rand_select"``, ``"default"``), a shipped file or a path to a TOML file,
        optionally followed by ``@`` and table names (``"reproduce_linear@quick"``,
        ``"iso_rand@biglr"``, ``"my.toml@full"``).
      mode: the mode table to use (``"tiny"``, ``"quick"``, ``"full"``) of a file with modes.
      seeds: the seed set to use (``"select"``, ``"report"``) of a file with seed sets.

    Raises:
      ValueError: naming the file and the field, for a missing file, malformed TOML, an
        unknown table or key, a wrong type or a rule that does not evaluate.
    """
    from linsam._src.engine.config import SimConfig  # lazy: keeps the config reader free of JAX until used

    path, raw = resolve(name_or_path, mode=mode, seeds=seeds)
    try:
        config = SimConfig.from_dict(raw)  # a wrong value is named first
        missing = [k for k in REQUIRED if k not in raw]
        if missing:  # an empty or description-only file would silently run the defaults
            raise ValueError(
                f"the config does not say what to run: missing {', '.join(missing)} (e.g. "
                f"methods = [\"gd\", \"one_sam\"], rhos = [0.0, 0.5]); for the default sweep, ask for it: "
                f"`linsam simulate --default-sweep` or load_config(\"default\")")
        return config
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
