"""CIFAR-10 loaders (JPEG archive + cache, pickle release), preprocessing and label noise.

Everything here is built inside the test (tiny archives in tmp_path); nothing needs the real
dataset except the last test, which is skipped when ../shared/data is absent.
"""

import io
import os
import pickle
import tarfile

import numpy as np
import pytest

pytest.importorskip("PIL")

import jax.numpy as jnp  # noqa: E402
from PIL import Image  # noqa: E402

from linsam.cifar import data as cdata  # noqa: E402

CLASSES = cdata.CLASSES


def _color(split, c, i):
    """A flat colour per image, far apart between images so JPEG rounding cannot confuse them."""
    return np.array([(25 * c + 10) % 256, (60 * i + 40 + (split == "test") * 100) % 256, 200 - 15 * c], np.uint8)


def _jpeg_bytes(color):
    img = np.broadcast_to(color, (32, 32, 3)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _add(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def make_jpeg_tar(path, n_train=2, n_test=1, classes=CLASSES, prefix=""):
    """The shared layout: train/<class>/NNNN.jpg, test/<class>/NNNN.jpg (members unordered)."""
    with tarfile.open(path, "w:gz") as tar:
        for split, n in (("test", n_test), ("train", n_train)):
            for name in reversed(classes):
                for i in reversed(range(n)):
                    _add(tar, f"{prefix}{split}/{name}/{i:04d}.jpg", _jpeg_bytes(_color(split, CLASSES.index(name), i)))
    return path


def make_pickle_dir(root, n_per_batch=3, seed=0):
    """cifar-10-batches-py with known pixels; returns (dir, x_train, y_train, x_test, y_test) in HWC."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    xs, ys = {}, {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (n_per_batch, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, n_per_batch).tolist()
        rows = x.transpose(0, 3, 1, 2).reshape(n_per_batch, 3072)  # the release's CHW row layout
        with open(d / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": y, b"data": rows}, f, protocol=2)
        xs[name], ys[name] = x, np.asarray(y, np.int32)
    train = [f"data_batch_{i}" for i in range(1, 6)]
    x_train, y_train = np.concatenate([xs[n] for n in train]), np.concatenate([ys[n] for n in train])
    return d, x_train, y_train, xs["test_batch"], ys["test_batch"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    c = tmp_path / "cache"
    monkeypatch.setenv("LINSAM_CACHE_DIR", str(c))
    return c


def test_jpeg_tar_loads_in_class_order_and_is_cached(tmp_path, cache, monkeypatch):
    path = make_jpeg_tar(tmp_path / "cifar10-jpeg.tar.gz")
    ds = cdata.load_cifar10(path)
    assert ds.format == "jpeg" and ds.x_train.shape == (20, 32, 32, 3) and ds.x_test.shape == (10, 32, 32, 3)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
    np.testing.assert_array_equal(ds.y_train, np.repeat(np.arange(10), 2))
    np.testing.assert_array_equal(ds.y_test, np.arange(10))
    for k in range(20):  # order: class id, then file name; JPEG keeps a flat colour within a few levels
        c, i = divmod(k, 2)
        assert np.abs(ds.x_train[k].astype(int).mean(axis=(0, 1)) - _color("train", c, i)).max() < 6, k
    files = list(cache.glob("cifar10-jpeg-*.npz"))
    assert len(files) == 1, "the decoded arrays must be cached"

    def boom(*a, **k):
        raise AssertionError("decoded again although the cache holds this archive")

    monkeypatch.setattr(cdata, "_decode_jpeg_tar", boom)
    again = cdata.load_cifar10(path)
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    assert again.fingerprint == ds.fingerprint


def test_cache_is_keyed_by_content(tmp_path, cache):
    a = make_jpeg_tar(tmp_path / "a.tar.gz")
    ds_a = cdata.load_cifar10(a)
    make_jpeg_tar(a, n_train=3)  # same path, new content
    ds_b = cdata.load_cifar10(a)
    assert ds_b.x_train.shape[0] == 30 and ds_b.fingerprint != ds_a.fingerprint
    # a corrupt cache file is ignored and rebuilt, never trusted
    for f in cache.glob("*.npz"):
        f.write_bytes(b"garbage")
    assert cdata.load_cifar10(a).x_train.shape[0] == 30


def test_jpeg_tar_with_top_directory_and_unpacked_directory(tmp_path, cache):
    ds = cdata.load_cifar10(make_jpeg_tar(tmp_path / "x.tar.gz", prefix="cifar10/"))
    assert ds.x_train.shape[0] == 20
    root = tmp_path / "unpacked"
    with tarfile.open(tmp_path / "x.tar.gz") as tar:
        tar.extractall(root, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    ds2 = cdata.load_cifar10(root / "cifar10")
    np.testing.assert_array_equal(ds2.x_train, ds.x_train)
    np.testing.assert_array_equal(ds2.y_test, ds.y_test)


def test_pickle_directory_and_tar(tmp_path):
    d, xtr, ytr, xte, yte = make_pickle_dir(tmp_path / "p")
    for path in (d, d.parent):
        ds = cdata.load_cifar10(path)
        assert ds.format == "pickle"
        np.testing.assert_array_equal(ds.x_train, xtr)  # exact: CHW rows -> HWC images
        np.testing.assert_array_equal(ds.y_train, ytr)
        np.testing.assert_array_equal(ds.x_test, xte)
        np.testing.assert_array_equal(ds.y_test, yte)
    tgz = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(d, arcname="cifar-10-batches-py")
    ds = cdata.load_cifar10(tgz)
    assert ds.format == "pickle"
    np.testing.assert_array_equal(ds.x_train, xtr)


def test_pickle_that_runs_code_is_refused(tmp_path):
    d, *_ = make_pickle_dir(tmp_path / "p")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(d / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(cdata.DatasetError, match="data_batch_3"):
        cdata.load_cifar10(d)


def test_missing_and_corrupt_files_give_clear_errors(tmp_path, cache):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cdata.load_cifar10(tmp_path / "nope.tar.gz")
    good = make_jpeg_tar(tmp_path / "good.tar.gz").read_bytes()
    trunc = tmp_path / "truncated.tar.gz"
    trunc.write_bytes(good[: len(good) // 2])
    with pytest.raises(cdata.DatasetError, match="corrupt"):
        cdata.load_cifar10(trunc)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"this is not an archive" * 100)
    with pytest.raises(cdata.DatasetError, match="not a tar archive"):
        cdata.check_data_path(junk)
    with pytest.raises(cdata.DatasetError, match="not a tar archive"):
        cdata.load_cifar10(junk)
    with pytest.raises(cdata.DatasetError, match="lacks the class directories"):
        cdata.load_cifar10(make_jpeg_tar(tmp_path / "nine.tar.gz", classes=CLASSES[:9]))
    wrong = tmp_path / "wrong.tar.gz"
    with tarfile.open(wrong, "w:gz") as tar:
        _add(tar, "README.txt", b"hello")
    with pytest.raises(cdata.DatasetError, match="no images found"):
        cdata.load_cifar10(wrong)
    bad_img = tmp_path / "badimg.tar.gz"
    with tarfile.open(bad_img, "w:gz") as tar:
        _add(tar, "train/cat/0000.jpg", b"not a jpeg")
    with pytest.raises(cdata.DatasetError, match="cannot decode image train/cat/0000.jpg"):
        cdata.load_cifar10(bad_img)
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(cdata.DatasetError, match="neither"):
        cdata.check_data_path(tmp_path / "emptydir")


def test_default_path_env_and_shared_location(tmp_path, monkeypatch):
    arch = make_jpeg_tar(tmp_path / "env.tar.gz")
    monkeypatch.setenv("LINSAM_CIFAR10", str(arch))
    assert cdata.resolve_data_path(None) == arch
    monkeypatch.delenv("LINSAM_CIFAR10")
    cands = cdata.default_data_candidates()
    assert cands[0] == (cdata.repo_root() / ".." / "shared" / "data" / "cifar10-jpeg.tar.gz").resolve()
    monkeypatch.chdir(tmp_path)
    if not any(p.exists() for p in cdata.default_data_candidates()):
        with pytest.raises(FileNotFoundError, match="--data"):
            cdata.resolve_data_path(None)


def test_channel_stats_and_preprocess():
    x = np.zeros((2, 4, 4, 3), np.uint8)
    x[0] = 255
    x[..., 2] = 51
    mean, std = cdata.channel_stats(x)
    np.testing.assert_allclose(mean, [0.5, 0.5, 0.2], rtol=1e-6)
    np.testing.assert_allclose(std, [0.5, 0.5, 1.0], rtol=1e-6)  # a constant channel gets std 1, not 0
    out = np.asarray(cdata.preprocess(jnp.asarray(x), mean, std))
    np.testing.assert_allclose(out[0, 0, 0], [1.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(out[1, 0, 0], [-1.0, -1.0, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="x_uint8"):
        cdata.channel_stats(np.zeros((4, 4, 3)))


def test_augmentation_crop_and_flip():
    x = jnp.asarray(np.arange(2 * 8 * 8 * 3, dtype=np.float32).reshape(2, 8, 8, 3) + 1.0)
    centre = np.full((2, 2), 4, np.int32)
    np.testing.assert_array_equal(cdata.apply_augmentation(x, centre, np.zeros(2, bool)), x)
    flipped = np.asarray(cdata.apply_augmentation(x, centre, np.array([True, False])))
    np.testing.assert_array_equal(flipped[0], np.asarray(x)[0, :, ::-1])
    np.testing.assert_array_equal(flipped[1], np.asarray(x)[1])
    corner = np.asarray(cdata.apply_augmentation(x, np.zeros((2, 2), np.int32), np.zeros(2, bool)))
    assert np.all(corner[:, :4, :] == 0) and np.all(corner[:, :, :4] == 0)  # zero padding enters
    np.testing.assert_array_equal(corner[:, 4:, 4:], np.asarray(x)[:, :4, :4])
    offs, flips = cdata.augmentation_params(np.random.default_rng(0), (50, 16))
    assert offs.shape == (50, 16, 2) and offs.min() == 0 and offs.max() == 8 and 0.4 < flips.mean() < 0.6


def test_label_noise_kinds():
    pytest.importorskip("linsam.data")
    import jax

    y = np.repeat(np.arange(10, dtype=np.int32), 100)
    sym = cdata.noisy_labels(jax.random.PRNGKey(0), y, "symmetric", 0.3)
    assert int(np.sum(sym.mask)) == 300 and abs(sym.rate - 0.3) < 1e-12
    noisy, clean = np.asarray(sym.noisy), np.asarray(sym.clean)
    np.testing.assert_array_equal(noisy != clean, np.asarray(sym.mask))
    asym = cdata.noisy_labels(jax.random.PRNGKey(1), y, "asymmetric", 0.4)
    n, c = np.asarray(asym.noisy), np.asarray(asym.clean)
    allowed = {(9, 1), (2, 0), (3, 5), (5, 3), (4, 7)}  # truck->auto, bird->plane, cat<->dog, deer->horse
    assert {(int(a), int(b)) for a, b in zip(c[c != n], n[c != n])} <= allowed
    assert 0.1 < asym.rate < 0.35  # 5 of 10 classes flip with p = 0.4
    pf = cdata.noisy_labels(jax.random.PRNGKey(2), y, "pair_flip", 0.2)
    n, c = np.asarray(pf.noisy), np.asarray(pf.clean)
    np.testing.assert_array_equal(n[c != n], (c[c != n] + 1) % 10)
    with pytest.raises(ValueError, match="noise kind"):
        cdata.noisy_labels(jax.random.PRNGKey(0), y, "uniform", 0.3)


def test_shared_archive_if_present(tmp_path):
    """The real file: cheap checks only (hash, listing); full decode is not a unit test."""
    cands = [p for p in cdata.default_data_candidates() if p.exists() and p.name == cdata.SHARED_ARCHIVE_NAME]
    if not cands:
        pytest.skip("../shared/data/cifar10-jpeg.tar.gz not present")
    p = cdata.check_data_path(cands[0])
    assert cdata.file_sha256(p) == cdata.SHARED_ARCHIVE_SHA256
