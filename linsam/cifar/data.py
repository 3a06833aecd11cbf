r"""CIFAR-10 loading, caching, normalisation, on-device augmentation and label noise.

Two on-disk formats are read:

- the project's JPEG archive (``cifar10-jpeg.tar.gz``, layout ``train/<class>/NNNN.jpg`` and
  ``test/<class>/NNNN.jpg``; also an unpacked directory with that layout). Decoded once with
  Pillow; the uint8 arrays are cached as ``.npz`` in the user cache directory
  (``$LINSAM_CACHE_DIR``, else ``$XDG_CACHE_HOME/linsam``, else ``~/.cache/linsam``), keyed by
  the archive's sha256 and size, so a changed or corrupt archive is never served from cache.
- the original python-pickle release ``cifar-10-batches-py`` (a directory holding
  ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``, or the ``cifar-10-python.tar.gz``
  archive that contains it). Unpickled with a restricted unpickler that only builds numpy
  arrays, so a pickle cannot run arbitrary code.

Images are ordered by split, then class id (CIFAR-10 order, :data:`CLASSES`), then file
name, so the arrays are the same on every machine. Labels are int32 class ids.

On device, a batch of uint8 images becomes the network input

.. math::

    x = \big(\mathrm{aug}(u / 255) - \mu\big) / \sigma

with :math:`\mu, \sigma` the per-channel mean and standard deviation of the training
images (:func:`channel_stats`) and ``aug`` the standard CIFAR augmentation: zero-pad 4
pixels, take a random 32x32 crop, flip horizontally with probability 1/2
(:func:`apply_augmentation`, run on the device inside the training step); ``augment=False``
switches it off.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from linsam._src.atomic import write_atomic

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
#: The project's shared copy (see ../shared/data/README.md).
SHARED_ARCHIVE_NAME = "cifar10-jpeg.tar.gz"
SHARED_ARCHIVE_SHA256 = "d34c68f61cca57aa9144c8f25bda427abb9921bd642d5857a2fc1a6b4416f965"
CACHE_VERSION = 1


class DatasetError(ValueError):
    """The dataset file exists but is not a readable CIFAR-10 set (corrupt, wrong layout)."""


class CIFAR10(NamedTuple):
    """CIFAR-10 as uint8 arrays.

    Attributes:
      x_train: (n_train, 32, 32, 3) uint8.
      y_train: (n_train,) int32 class ids in [0, 10).
      x_test: (n_test, 32, 32, 3) uint8.
      y_test: (n_test,) int32.
      source: path the data was read from.
      fingerprint: ``sha256:<hex>`` of the archive (JPEG) or of the concatenated batch files.
      format: ``"jpeg"`` or ``"pickle"``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    fingerprint: str
    format: str


# ----------------------------------------------------------------------------- locating the data


def repo_root() -> Path:
    """The directory that holds the ``linsam`` package (the repository root in a checkout)."""
    return Path(__file__).resolve().parents[2]


def default_data_candidates() -> list[Path]:
    """Where the dataset is looked for when no path is given, in order.

    ``$LINSAM_CIFAR10``, then ``../shared/data/cifar10-jpeg.tar.gz`` relative to the
    repository root and to the current directory.
    """
    out = []
    env = os.environ.get("LINSAM_CIFAR10")
    if env:
        out.append(Path(env))
    for base in (repo_root(), Path.cwd()):
        p = (base / ".." / "shared" / "data" / SHARED_ARCHIVE_NAME).resolve()
        if p not in out:
            out.append(p)
    return out


def resolve_data_path(path: str | os.PathLike | None = None) -> Path:
    """The dataset path to use; ``FileNotFoundError`` naming what was tried if there is none."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"data path {str(p)!r} does not exist (give --data PATH to a CIFAR-10 "
                                    f"JPEG tar.gz, a cifar-10-batches-py directory, or its tar.gz)")
        return p
    tried = default_data_candidates()
    for p in tried:
        if p.exists():
            return p
    raise FileNotFoundError(
        "no CIFAR-10 data found; give --data PATH (or set LINSAM_CIFAR10). Tried: "
        + ", ".join(str(p) for p in tried)
    )


def cache_dir() -> Path:
    """``$LINSAM_CACHE_DIR``, else ``$XDG_CACHE_HOME/linsam``, else ``~/.cache/linsam``."""
    if os.environ.get("LINSAM_CACHE_DIR"):
        return Path(os.environ["LINSAM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "linsam"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- JPEG layout


def _split_class_name(name: str):
    """('train'|'test', class id, file name) for a member path in the JPEG layout, else None.

    Accepts ``train/<class>/<file>.jpg`` with at most one leading directory.
    """
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if len(parts) == 4:
        parts = parts[1:]
    if len(parts) != 3 or parts[0] not in ("train", "test"):
        return None
    if not parts[2].lower().endswith((".jpg", ".jpeg", ".png")):
        return None
    if parts[1] not in CLASSES:
        raise DatasetError(f"unknown class directory {parts[1]!r} in {name!r}; expected one of {', '.join(CLASSES)}")
    return parts[0], CLASSES.index(parts[1]), parts[2]


def _decode_image(data: bytes, where: str) -> np.ndarray:
    from PIL import Image  # optional dependency (extra "gpu")

    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as err:  # PIL raises many types for bad bytes
        raise DatasetError(f"cannot decode image {where}: {err}") from err
    if arr.shape != IMAGE_SHAPE:
        raise DatasetError(f"image {where} has shape {arr.shape}; CIFAR-10 images are {IMAGE_SHAPE}")
    return arr


def _assemble(records: dict, source: str) -> tuple:
    out = []
    for split in ("train", "test"):
        recs = sorted(records[split], key=lambda r: (r[0], r[1]))
        if not recs:
            raise DatasetError(f"{source}: no images found under {split}/<class>/ (expected the layout "
                               f"train/<class>/NNNN.jpg and test/<class>/NNNN.jpg)")
        present = {r[0] for r in recs}
        if split == "train" and len(present) != NUM_CLASSES:
            missing = [CLASSES[c] for c in range(NUM_CLASSES) if c not in present]
            raise DatasetError(f"{source}: train/ lacks the class directories {missing}")
        out.append(np.stack([r[2] for r in recs]))
        out.append(np.asarray([r[0] for r in recs], np.int32))
    return tuple(out)


def _decode_all(items: list) -> dict:
    """Decode [(split, class, name, bytes, where)] with a thread pool (Pillow releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(8, os.cpu_count() or 1))
    decode = lambda it: (it[0], (it[1], it[2], _decode_image(it[3], it[4])))  # noqa: E731
    records = {"train": [], "test": []}
    if workers == 1:
        results = list(map(decode, items))
    else:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(decode, items))
    for split, rec in results:
        records[split].append(rec)
    return records


def _decode_jpeg_tar(path: Path) -> tuple:
    items = []
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key = _split_class_name(member.name)
                if key is None:
                    continue
                data = tar.extractfile(member).read()
                items.append((key[0], key[1], key[2], data, f"{member.name} in {path}"))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise DatasetError(f"{path} is corrupt or not a tar archive: {err}") from err
    return _assemble(_decode_all(items), str(path))


def _decode_jpeg_dir(path: Path) -> tuple:
    items = []
    for split in ("train", "test"):
        for file in sorted((path / split).glob("*/*")):
            key = _split_class_name(str(file.relative_to(path)))
            if key is not None:
                items.append((split, key[1], key[2], file.read_bytes(), str(file)))
    return _assemble(_decode_all(items), str(path))


def _cache_file(fingerprint: str, size: int) -> Path:
    return cache_dir() / f"cifar10-jpeg-v{CACHE_VERSION}-{fingerprint[:16]}-{size}.npz"


def _load_cache(file: Path, fingerprint: str):
    try:
        with np.load(file, allow_pickle=False) as z:
            if str(z["fingerprint"]) != fingerprint:
                return None
            arrays = tuple(np.asarray(z[k]) for k in ("x_train", "y_train", "x_test", "y_test"))
    except Exception:  # an unreadable cache is rebuilt, never trusted
        return None
    if arrays[0].dtype != np.uint8 or arrays[0].shape[1:] != IMAGE_SHAPE:
        return None
    return arrays


def _save_cache(file: Path, fingerprint: str, arrays: tuple) -> None:
    try:
        write_atomic(file, lambda f: np.savez(f, fingerprint=np.asarray(fingerprint), x_train=arrays[0],
                                              y_train=arrays[1], x_test=arrays[2], y_test=arrays[3]))
    except OSError:  # a read-only cache dir only costs a re-decode next time
        pass


# ----------------------------------------------------------------------------- pickle layout


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only reconstructs numpy arrays/dtypes (the CIFAR batches need no more)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode"), ("builtins", "bytearray"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR pickle")


def _unpickle_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        d = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:
        raise DatasetError(f"cannot unpickle {where}: {err}") from err
    if not isinstance(d, dict):
        raise DatasetError(f"{where}: expected a dict with b'data' and b'labels'")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise DatasetError(f"{where}: missing 'data' or 'labels' (keys: {sorted(d)})")
    data = np.asarray(d["data"])
    labels = np.asarray(d["labels"], np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise DatasetError(f"{where}: data has shape {data.shape}, labels {labels.shape}; expected (n, 3072), (n,)")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DatasetError(f"{where}: labels outside [0, 10)")
    images = data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW rows -> HWC
    return np.ascontiguousarray(images), labels.astype(np.int32)


_BATCH_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def _read_pickle_batches(read, where: str) -> tuple:
    h = hashlib.sha256()
    parts = {}
    for name in _BATCH_FILES:
        raw = read(name)
        h.update(raw)
        parts[name] = _unpickle_batch(raw, f"{name} in {where}")
    x_train = np.concatenate([parts[n][0] for n in _BATCH_FILES[:5]])
    y_train = np.concatenate([parts[n][1] for n in _BATCH_FILES[:5]])
    return (x_train, y_train, parts["test_batch"][0], parts["test_batch"][1]), "sha256:" + h.hexdigest()


def _pickle_dir(path: Path) -> Path | None:
    for cand in (path, path / "cifar-10-batches-py"):
        if (cand / "data_batch_1").is_file():
            return cand
    return None


def _load_pickle_dir(path: Path):
    def read(name):
        f = path / name
        if not f.is_file():
            raise DatasetError(f"{path} lacks {name} (a cifar-10-batches-py directory holds "
                               f"{', '.join(_BATCH_FILES)})")
        return f.read_bytes()

    return _read_pickle_batches(read, str(path))


def _load_pickle_tar(path: Path, tar: tarfile.TarFile, members: dict):
    def read(name):
        if name not in members:
            raise DatasetError(f"{path} lacks {name}")
        return tar.extractfile(members[name]).read()

    return _read_pickle_batches(read, str(path))


# ----------------------------------------------------------------------------- public loader


def load_cifar10(path: str | os.PathLike | None = None, *, use_cache: bool = True, verbose: bool = False) -> CIFAR10:
    """Load CIFAR-10 as uint8 arrays from the JPEG archive/directory or the pickle release.

    Args:
      path: a ``cifar10-jpeg.tar.gz``-style archive, a directory with ``train/``/``test/``
        class folders, a ``cifar-10-batches-py`` directory, or ``cifar-10-python.tar.gz``.
        None: the first existing of :func:`default_data_candidates`.
      use_cache: read/write the decoded JPEG arrays in :func:`cache_dir`.
      verbose: print where the data came from.

    Raises:
      FileNotFoundError: no such path (the message says what was tried).
      DatasetError: the file is corrupt or not CIFAR-10 in a known layout.
    """
    p = resolve_data_path(path)
    if p.is_dir():
        pdir = _pickle_dir(p)
        if pdir is not None:
            arrays, fp = _load_pickle_dir(pdir)
            return CIFAR10(*arrays, source=str(pdir), fingerprint=fp, format="pickle")
        if (p / "train").is_dir():
            arrays = _decode_jpeg_dir(p)
            return CIFAR10(*arrays, source=str(p), fingerprint="dir:" + str(p.resolve()), format="jpeg")
        raise DatasetError(f"{p} is a directory but holds neither cifar-10-batches-py pickles "
                           f"nor train/<class>/ images")
    size = p.stat().st_size
    sha = file_sha256(p)
    fp = "sha256:" + sha
    if p.name == SHARED_ARCHIVE_NAME and size > 10_000_000 and sha != SHARED_ARCHIVE_SHA256 and verbose:
        print(f"[cifar] note: {p} differs from the project's shared copy (sha256 {sha[:12]}...)")
    cfile = _cache_file(sha, size)
    if use_cache and cfile.exists():
        arrays = _load_cache(cfile, fp)
        if arrays is not None:
            if verbose:
                print(f"[cifar] loaded decoded arrays from cache {cfile}")
            return CIFAR10(*arrays, source=str(p), fingerprint=fp, format="jpeg")
    try:
        is_tar = tarfile.is_tarfile(p)
    except OSError as err:
        raise DatasetError(f"cannot read {p}: {err}") from err
    if not is_tar:
        raise DatasetError(f"{p} is not a tar archive (expected cifar10-jpeg.tar.gz, cifar-10-python.tar.gz, "
                           f"or a cifar-10-batches-py directory)")
    # Pickle release inside a tar? Look at the member names first (cheap for the small archive).
    try:
        with tarfile.open(p, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers()
                       if m.isfile() and Path(m.name).name in _BATCH_FILES}
            if "data_batch_1" in members:
                arrays, _ = _load_pickle_tar(p, tar, members)
                return CIFAR10(*arrays, source=str(p), fingerprint=fp, format="pickle")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise DatasetError(f"{p} is corrupt or not a tar archive: {err}") from err
    if verbose:
        print(f"[cifar] decoding JPEG images from {p} (once; cached in {cfile.parent}) ...", flush=True)
    arrays = _decode_jpeg_tar(p)
    if use_cache:
        _save_cache(cfile, fp, arrays)
    return CIFAR10(*arrays, source=str(p), fingerprint=fp, format="jpeg")


def check_data_path(path: str | os.PathLike | None = None) -> Path:
    """Cheap up-front check (exists; a tar archive or a known directory layout), no decoding."""
    p = resolve_data_path(path)
    if p.is_dir():
        if _pickle_dir(p) is None and not (p / "train").is_dir():
            raise DatasetError(f"{p} is a directory but holds neither cifar-10-batches-py pickles nor train/<class>/")
        return p
    try:
        ok = tarfile.is_tarfile(p)
    except OSError as err:
        raise DatasetError(f"cannot read {p}: {err}") from err
    if not ok:
        raise DatasetError(f"{p} is not a tar archive (expected a CIFAR-10 tar.gz or directory)")
    return p


# ----------------------------------------------------------------------------- preprocessing


def channel_stats(x_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Per-channel mean and std of images scaled to [0, 1], each shape (3,), float32.

    .. math:: \mu_c = \mathrm{mean}_{n,h,w}\, u_{nhwc}/255, \quad
              \sigma_c = \mathrm{std}_{n,h,w}\, u_{nhwc}/255
    """
    x = np.asarray(x_uint8)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"x_uint8 must have shape (n, H, W, 3), got {x.shape}")
    flat = x.reshape(-1, 3).astype(np.float64) / 255.0
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)  # a constant channel is left unscaled, not divided by ~0
    return mean.astype(np.float32), std.astype(np.float32)


def apply_augmentation(x: jax.Array, offsets: jax.Array, flips: jax.Array, *, padding: int = 4) -> jax.Array:
    """Zero-pad by ``padding``, crop at ``offsets`` (n, 2) in [0, 2 padding], flip where ``flips``.

    ``x``: (n, H, W, C) float images in [0, 1]; returns the same shape and dtype. The random
    numbers are inputs, so the transform itself is deterministic.
    """
    n, h, w, c = x.shape
    if padding > 0:
        xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
        def crop(img, o):
            return jax.lax.dynamic_slice(img, (o[0], o[1], jnp.zeros((), o.dtype)), (h, w, c))

        x = jax.vmap(crop)(xp, offsets)
    return jnp.where(jnp.asarray(flips, bool)[:, None, None, None], x[:, :, ::-1, :], x)


def augment(key, x: jax.Array, *, padding: int = 4) -> jax.Array:
    """Random ``padding``-pixel zero-padded crop and random horizontal flip, per example.

    The jax.random front end of :func:`apply_augmentation` (the trainer draws the same
    numbers on the host, see :func:`augmentation_params`).
    """
    kc, kf = jax.random.split(key)
    offs = jax.random.randint(kc, (x.shape[0], 2), 0, 2 * padding + 1)
    return apply_augmentation(x, offs, jax.random.bernoulli(kf, 0.5, (x.shape[0],)), padding=padding)


def augmentation_params(rng: np.random.Generator, shape: tuple, padding: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Host-drawn crop offsets ``shape + (2,)`` int32 in [0, 2 padding] and flips ``shape`` bool."""
    offs = rng.integers(0, 2 * padding + 1, size=tuple(shape) + (2,), dtype=np.int32)
    flips = rng.random(tuple(shape)) < 0.5
    return offs, flips


def preprocess(x_uint8: jax.Array, mean, std, offsets=None, flips=None) -> jax.Array:
    """uint8 (n, 32, 32, 3) -> normalised float32 network input; augmented when ``offsets``
    and ``flips`` are given (:func:`apply_augmentation`), padding with black before normalising."""
    x = x_uint8.astype(jnp.float32) / 255.0
    if offsets is not None:
        x = apply_augmentation(x, offsets, flips)
    return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


# ----------------------------------------------------------------------------- label noise


#: Noise kinds accepted by :func:`noisy_labels` (symmetric = exactly floor(p n) flips).
NOISE_KINDS = ("symmetric", "symmetric_bernoulli", "asymmetric", "pair_flip")


def noisy_labels(key, labels: np.ndarray, kind: str, rate: float):
    """Corrupt CIFAR-10 class ids with :mod:`linsam.data`; returns its ``NoisyLabels``.

    ``symmetric``: exactly :math:`\\lfloor p n \\rfloor` labels flipped to a uniformly chosen
    other class; ``symmetric_bernoulli``: each label flipped with probability p;
    ``asymmetric``: the CIFAR-10 class map (truck->automobile, bird->airplane, cat<->dog,
    deer->horse) with probability p; ``pair_flip``: class i -> (i + 1) mod 10 with
    probability p (structured, class-conditional). The result keeps the clean labels, the
    noisy labels, the noise mask and the realised rate (mean of the mask).
    """
    from linsam import data as ldata

    if kind not in NOISE_KINDS:
        raise ValueError(f"noise kind must be one of {', '.join(NOISE_KINDS)}; got {kind!r}")
    labels = jnp.asarray(labels, jnp.int32)
    if kind == "symmetric":
        return ldata.symmetric_noise(key, labels, rate, NUM_CLASSES, exact=True)
    if kind == "symmetric_bernoulli":
        return ldata.symmetric_noise(key, labels, rate, NUM_CLASSES, exact=False)
    if kind == "asymmetric":
        T = ldata.cifar10_asymmetric_transition(rate)
    else:
        T = ldata.pair_flip_transition(rate, NUM_CLASSES)
    return ldata.transition_noise(key, labels, T)
