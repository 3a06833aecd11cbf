r"""TOML settings of the paper checks and figures.

The settings of every check ``Ck`` are the table ``[Ck]`` of ``linsam/configs/paper/checks.toml``,
those of every figure ``Fk`` the table ``[Fk]`` of ``figures.toml``, and what ``linsam
reproduce`` runs is ``reproduce.toml`` (a sub-directory: the files of ``linsam/configs/`` are
sweeps, :mod:`linsam._src.configs`). An entry's keys apply to every mode; its sub-tables
``tiny`` (the test suite), ``quick`` (``linsam reproduce --quick``) and ``full`` update them
for that mode. Any other sub-table (F7's ``noise_types``) is a value.

Sweeps are referenced by the name of a shipped config (:func:`linsam.simulate.shipped_configs`)
or by a path. A reference to a file with modes that picks none (``sweep = "reproduce_linear"``)
runs in the check's mode: ``reproduce_linear@quick`` under ``--quick`` (also runnable on its own
with ``linsam simulate --config reproduce_linear_quick``).

A user file (``--config FILE``) has the layout of one entry: ``[common]`` and/or mode tables,
or flat top-level keys (which apply to every mode); its keys override the shipped ones. A key
that the shipped entry does not know is refused with its name, before any work starts.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from linsam._src.configs import configs_dir as _sweeps_dir
from linsam._src.configs import file_modes, read_toml

__all__ = ["MODES", "configs_dir", "shipped_path", "load_settings", "read_toml"]

MODES = ("tiny", "quick", "full")
SWEEP_KEYS = ("sweep", "negative_sweep")


def configs_dir() -> Path:
    """``linsam/configs/paper``: the settings of the checks and figures (package data)."""
    return _sweeps_dir() / "paper"


def shipped_path(kind: str) -> Path:
    """The shipped settings file of ``kind`` ("checks", "figures" or "reproduce")."""
    if kind not in ("checks", "figures", "reproduce"):
        raise ValueError(f"kind must be 'checks', 'figures' or 'reproduce', got {kind!r}")
    return configs_dir() / f"{kind}.toml"


def _merge(base: dict, over: dict, where: str, allowed: dict | None) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if allowed is not None and k not in allowed:
            raise ValueError(f"{where}: unknown key {k!r}; allowed: {sorted(allowed)}")
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            sub_allowed = allowed.get(k) if isinstance(allowed, dict) and isinstance(allowed.get(k), dict) else None
            out[k] = _merge(out[k], v, f"{where}.{k}", sub_allowed if k != "noise_types" else None)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _split(entry: dict) -> tuple[dict, dict]:
    """An entry's shared keys and its mode tables."""
    return ({k: v for k, v in entry.items() if k not in MODES},
            {m: entry[m] for m in MODES if m in entry})


def load_settings(kind: str, ident: str, mode: str, user_file: str | os.PathLike | None = None) -> dict:
    """Settings of check/figure ``ident`` (``kind`` "checks" or "figures"; for "reproduce" the
    ident is ignored) in ``mode``: the shipped entry's shared keys updated by its mode table,
    then the user file's ``[common]`` and ``[mode]`` (or its flat top-level keys)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    path = shipped_path(kind)
    raw = read_toml(path)
    where = f"{path}" if kind == "reproduce" else f"{path} [{ident.upper()}]"
    if kind == "reproduce":
        entry = raw
    else:
        if ident.upper() not in raw:
            raise ValueError(f"{path}: no entry [{ident.upper()}]; entries: {sorted(raw)}")
        entry = raw[ident.upper()]
    common, modes = _split(entry)
    allowed: dict[str, Any] = {}
    for section in (common, *modes.values()):
        for k, v in section.items():
            allowed[k] = v if isinstance(v, dict) else True
    settings = _merge(common, modes.get(mode, {}), f"{where}.{mode}", None)
    if user_file is not None:
        user = read_toml(user_file)
        if set(user) & {"common", *MODES}:
            stray = set(user) - {"common", *MODES}
            if stray:
                raise ValueError(f"{user_file}: mix of mode tables and top-level keys {sorted(stray)}; "
                                 "put them under [common]")
            for section in ("common", mode):
                settings = _merge(settings, user.get(section, {}), f"{user_file}[{section}]", allowed)
        else:
            settings = _merge(settings, user, str(user_file), allowed)
    for key in SWEEP_KEYS:
        ref = settings.get(key)
        if isinstance(ref, str) and mode in file_modes(ref):
            settings[key] = f"{ref}@{mode}"
    if isinstance(settings.get("sweeps"), dict):  # a mapping label -> sweep (e.g. C5's one per model)
        settings["sweeps"] = {k: (f"{v}@{mode}" if isinstance(v, str) and mode in file_modes(v) else v)
                              for k, v in settings["sweeps"].items()}
    settings["_source"] = where if user_file is None else f"{where} + {user_file}"
    return settings
