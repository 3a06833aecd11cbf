"""Saved sweeps (issue 21 item 3, issue 23 items 3, 4, 6): results.nc that xarray opens, with
long_name/units everywhere and the config in attrs; one run id and a content hash in both files;
every load error (missing, truncated, mixed, edited) is one ValueError saying how to recover;
legacy results.npz still load; config.json is strict JSON.

The results here are built directly from arrays (no sweep runs): fast.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import xarray as xr

from linsam import simulate as sim
from linsam._src.atomic import strict_json
from linsam.data import MixtureSpec


def strict_loads(text: str):
    """json.loads that refuses NaN / Infinity (what a strict RFC 8259 parser does)."""
    def refuse(const):
        raise ValueError(f"non-standard JSON constant {const}")

    return json.loads(text, parse_constant=refuse)


CFG = sim.SimConfig(name="synthetic", methods=("gd", "one_sam"), rhos=(0.0, 0.5, 1.0), num_seeds=2, n=10, steps=4,
                    record_every=2, data=MixtureSpec(d=5))


def synthetic(seed: int = 0, **changes) -> sim.SweepResult:
    cfg = CFG.replace(**changes) if changes else CFG
    steps = sim.record_steps(cfg)
    rng = np.random.default_rng(seed)
    shape = (len(cfg.methods), len(cfg.rhos), cfg.num_seeds, len(steps))
    metrics = {m: rng.uniform(size=shape).astype(np.float32) for m in ("test_acc", "loss_clean", "w_norm")}
    metrics["grad_norm_ratio"] = np.full(shape, np.nan, np.float32)  # e.g. no noisy example
    return sim.SweepResult(config=cfg, axes=dict(method=list(cfg.methods), rho=np.asarray(cfg.rhos),
                                                 seed=cfg.seeds, step=np.asarray(steps)),
                           metrics=metrics, noise_rate=rng.uniform(size=cfg.num_seeds), bayes_acc=0.84,
                           elapsed_s=float("nan"), cpu_s=1.5, backend={"gd": "linear", "one_sam": "linear"})


def test_results_nc_opens_in_xarray_with_units_and_config(tmp_path):
    res = synthetic()
    out = res.save(tmp_path / "r")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "results.nc"]
    with xr.open_dataset(out / "results.nc") as ds:  # the default engine, as a user opens it
        assert dict(ds.sizes) == {"rule": 2, "rho": 3, "seed": 2, "step": 3}
        for name in [*ds.data_vars, *ds.coords]:
            assert ds[name].attrs.get("long_name") and ds[name].attrs.get("units"), name
        assert ds["test_acc"].attrs["units"] == "1" and "fraction" in ds["test_acc"].attrs["long_name"]
        assert sim.SimConfig.from_dict(json.loads(ds.attrs["config"])) == res.config
        assert ds.attrs["content_sha256"] == res.content_hash() and len(ds.attrs["run_id"]) == 32
        # the first dim is "rule": xarray's own sel(method=...) keyword does not shadow it
        np.testing.assert_array_equal(ds["test_acc"].sel(rule="one_sam", rho=0.5).values,
                                      res.sel("test_acc", rule="one_sam", rho=0.5))
    back = sim.SweepResult.load(out)
    assert back.config == res.config and back.axes["rule"] == ["gd", "one_sam"]
    # the old axis name still reads (code written before the rename)
    assert back.axes["method"] == ["gd", "one_sam"] and back.index("method", "one_sam") == 1
    np.testing.assert_array_equal(back.sel("test_acc", method="gd"), back.sel("test_acc", rule="gd"))
    for k, v in res.metrics.items():
        np.testing.assert_array_equal(back.metrics[k], v)
    np.testing.assert_array_equal(back.axes["seed"], res.axes["seed"])
    assert back.content_hash() == res.content_hash()


def test_config_json_is_strict_and_names_the_run(tmp_path):
    out = synthetic().save(tmp_path / "r")
    info = strict_loads((out / "config.json").read_text())
    nc_attrs = xr.open_dataset(out / "results.nc").attrs
    assert info["run_id"] == nc_attrs["run_id"] and info["content_sha256"] == nc_attrs["content_sha256"]
    assert info["elapsed_s"] is None and "nan" in info["null_reasons"]["elapsed_s"].lower()


def test_strict_json_nulls_non_finite_numbers_with_a_reason():
    text = strict_json({"ci": {"mean": 0.5, "lo": -math.inf, "hi": math.inf, "n": 1}, "x": [1.0, math.nan],
                        "y": np.float32(2.5), "z": np.arange(2)})
    d = strict_loads(text)
    assert d["ci"]["lo"] is None and d["ci"]["hi"] is None and d["ci"]["mean"] == 0.5
    assert "single seed" in d["ci"]["null_reasons"]["lo"] and set(d["ci"]["null_reasons"]) == {"lo", "hi"}
    assert d["x"] == [1.0, None] and d["y"] == 2.5 and d["z"] == [0, 1]


def _edit_json(path, fn):
    info = json.loads(path.read_text())
    fn(info)
    path.write_text(json.dumps(info))


def _rewrite_nc(path, fn):
    with xr.open_dataset(path, engine="scipy") as ds:
        ds = ds.load()
    fn(ds)
    path.write_bytes(bytes(ds.to_netcdf(engine="scipy")))


def test_edited_config_json_is_refused_naming_the_field(tmp_path):
    """Before: "lr": 99 in config.json loaded without complaint."""
    out = synthetic().save(tmp_path / "r")
    _edit_json(out / "config.json", lambda i: i["config"].update(lr=99))
    with pytest.raises(ValueError, match=r"config.json was edited after the run.*lr 99 vs 0\.1.*undo the edit"):
        sim.SweepResult.load(out)


def test_edited_results_nc_is_refused_by_the_content_hash(tmp_path):
    for what in ("data", "config"):
        out = synthetic().save(tmp_path / what)

        def edit(ds, what=what):
            if what == "data":
                ds["test_acc"].values[0, 0, 0, 0] += 0.25
            else:  # the config inside results.nc and config.json, both edited the same way
                ds.attrs["config"] = ds.attrs["config"].replace('"lr": 0.1', '"lr": 0.2')
        _rewrite_nc(out / "results.nc", edit)
        if what == "config":
            _edit_json(out / "config.json", lambda i: i["config"].update(lr=0.2))
        with pytest.raises(ValueError, match=r"results.nc was changed after the run.*content hash.*re-run the sweep"):
            sim.SweepResult.load(out)


def test_mixed_truncated_and_missing_files_are_one_clear_error(tmp_path):
    a, b = synthetic(0).save(tmp_path / "a"), synthetic(1).save(tmp_path / "b")
    (a / "config.json").write_bytes((b / "config.json").read_bytes())
    with pytest.raises(ValueError, match="not from the same run.*re-run the sweep"):
        sim.SweepResult.load(a)
    c = synthetic().save(tmp_path / "c")
    (c / "results.nc").write_bytes((c / "results.nc").read_bytes()[:300])
    with pytest.raises(ValueError, match=r"results.nc: not a readable netCDF file \(truncated or damaged"):
        sim.SweepResult.load(c)
    d = synthetic().save(tmp_path / "d")
    (d / "config.json").write_text('{"run_id": ')
    with pytest.raises(ValueError, match="config.json: damaged"):
        sim.SweepResult.load(d)
    (d / "config.json").unlink()
    with pytest.raises(ValueError, match="config.json is missing"):
        sim.SweepResult.load(d)
    with pytest.raises(ValueError, match="no such directory"):
        sim.SweepResult.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no results.nc .*re-run the sweep"):
        sim.SweepResult.load(tmp_path / "empty")


def test_arrays_that_disagree_with_their_config_are_refused(tmp_path):
    """Same run id and a matching hash, but the config says 1 seed and the arrays hold 2."""
    res = synthetic()
    res.config = CFG.replace(num_seeds=1)
    out = res.save(tmp_path / "a")
    with pytest.raises(ValueError, match=r"has shape \(2, 3, 2, 3\), but the config gives .* \(2, 3, 1, 3\)"):
        sim.SweepResult.load(out)


def _save_legacy(res: sim.SweepResult, out):
    """The format before results.nc (results.npz + config.json, as linsam 0.1.0 wrote it)."""
    out.mkdir(parents=True)
    info = dict(run_id="f" * 32, config=res.config.to_dict(), linsam_version="0.1.0", elapsed_s=1.0, cpu_s=1.0,
                bayes_acc=res.bayes_acc, backend=res.backend, axes=list(sim.AXES), metrics=sorted(res.metrics))
    arrays = {f"metric/{k}": v for k, v in res.metrics.items()}
    arrays["axis/method"] = np.asarray(res.axes["rule"], dtype=str)
    for axis in ("rho", "seed", "step"):
        arrays[f"axis/{axis}"] = np.asarray(res.axes[axis])
    arrays["noise_rate"], arrays["info"] = np.asarray(res.noise_rate), np.asarray(json.dumps(info))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (out / "results.npz").write_bytes(buf.getvalue())
    (out / "config.json").write_text(json.dumps(info))
    return out


def test_legacy_npz_results_still_load_and_are_checked(tmp_path):
    res = synthetic()
    old = _save_legacy(res, tmp_path / "old")
    back = sim.SweepResult.load(old)
    assert back.config == res.config
    np.testing.assert_array_equal(back.metrics["test_acc"], res.metrics["test_acc"])
    _edit_json(old / "config.json", lambda i: i["config"].update(lr=99))
    with pytest.raises(ValueError, match="config.json was edited after the run"):
        sim.SweepResult.load(old)
    trunc = _save_legacy(res, tmp_path / "trunc")
    (trunc / "results.npz").write_bytes((trunc / "results.npz").read_bytes()[:200])
    with pytest.raises(ValueError, match=r"results.npz: not a readable results file \(truncated or damaged"):
        sim.SweepResult.load(trunc)
    # saving a new result over a legacy one replaces it (no stale file contradicts the new run)
    res.save(old)
    assert not (old / "results.npz").exists() and sim.SweepResult.load(old).config == res.config


def test_simconfig_validates_when_built():
    with pytest.raises(ValueError, match="lr must be"):
        sim.SimConfig(lr=-1.0)
    with pytest.raises(ValueError, match="rhos"):
        sim.SimConfig(rhos=(-0.5,))
    with pytest.raises(ValueError, match="batch_size"):
        CFG.replace(batch_size=11)
