r"""TOML settings of the paper checks and figures.

Every check ``Ck`` and figure ``Fk`` has a shipped file ``linsam/configs/paper/checks_ck.toml`` /
``figures_fk.toml`` (a sub-directory: every ``linsam/configs/*.toml`` is a
:class:`linsam.simulate.SimConfig`, these are not) with a ``[common]`` table and one table per mode (``[tiny]`` for the test
suite, ``[quick]`` for ``linsam reproduce --quick``, ``[full]``); the settings of a mode are
``common`` updated by the mode's table. Sweeps are referenced by the name of a shipped
:class:`linsam.simulate.SimConfig` file (``reproduce_linear_quick`` ->
``linsam/configs/reproduce_linear_quick.toml``, also runnable on its own with
``linsam simulate --config reproduce_linear_quick``) or by a path.

A user file (``--config FILE``) has the same layout (``[common]`` and/or mode tables) or is
flat (top-level keys apply to every mode); its keys override the shipped ones. A key that the
shipped file does not know is refused with its name, before any work starts.
"""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path
from typing import Any

import linsam

__all__ = ["MODES", "configs_dir", "shipped_path", "load_settings", "read_toml"]

MODES = ("tiny", "quick", "full")


def configs_dir() -> Path:
    """``linsam/configs/paper``: the settings of the checks and figures (package data)."""
    return Path(linsam.__file__).resolve().parent / "configs" / "paper"


def shipped_path(kind: str, ident: str) -> Path:
    """Path of the shipped settings of check/figure ``ident`` (``kind`` "checks" or "figures")."""
    if kind == "reproduce":
        return configs_dir() / "reproduce.toml"
    if kind not in ("checks", "figures"):
        raise ValueError(f"kind must be 'checks', 'figures' or 'reproduce', got {kind!r}")
    return configs_dir() / f"{kind}_{ident.lower()}.toml"


def read_toml(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {str(path)!r} not found")
    with open(p, "rb") as fh:
        try:
            return tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{p}: not valid TOML: {err}") from None


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


def load_settings(kind: str, ident: str, mode: str, user_file: str | os.PathLike | None = None) -> dict:
    """Settings of check/figure ``ident`` in ``mode``: shipped ``[common]`` + ``[mode]``,
    then the user file's ``[common]`` + ``[mode]`` (or its flat top-level keys)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    path = shipped_path(kind, ident)
    raw = read_toml(path)
    bad = set(raw) - {"common", *MODES}
    if bad:
        raise ValueError(f"{path}: unknown table(s) {sorted(bad)}; allowed: common, {', '.join(MODES)}")
    allowed: dict[str, Any] = {}
    for section in ("common", *MODES):
        for k, v in raw.get(section, {}).items():
            allowed[k] = v if isinstance(v, dict) else True
    settings = _merge(raw.get("common", {}), raw.get(mode, {}), f"{path}[{mode}]", None)
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
    settings["_source"] = str(path) if user_file is None else f"{path} + {user_file}"
    return settings
