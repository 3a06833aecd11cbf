"""CIFAR-10 + label noise + ResNet-18: the paper's deep experiment (Baek et al., ICLR 2024, Sec. 4).

Submodules:

- :mod:`linsam.cifar.data`: loaders (the shared JPEG archive, cached; the original pickles),
  per-channel normalisation, on-device augmentation, label noise through :mod:`linsam.data`.
- :mod:`linsam.cifar.resnet`: CIFAR ResNet-18 in Flax (LayerNorm / GroupNorm / BatchNorm,
  bf16 compute) and its model definition (:class:`linsam.models.Generic`).
- :mod:`linsam.cifar.train`: the driver (method values of :mod:`linsam.rules` as optax
  transformations, :mod:`linsam.optax`, chained before optax SGD with momentum,
  per-epoch metrics, checkpoints and resume, a measured time plan, results JSON), split by
  concern into :mod:`~linsam.cifar.config` (the config and its checks),
  :mod:`~linsam.cifar.plan` (the data plan), :mod:`~linsam.cifar.programs` (the compiled
  step programs), :mod:`~linsam.cifar.loop` (the loop, checkpoints, time plan) and
  :mod:`~linsam.cifar.results` (summaries, aggregates, figures); ``train`` re-exports them.
- :mod:`linsam.cifar.small`: the CPU preset's networks (a ReLU MLP on the pixels, with
  closed-form 1-SAM, L-SAM and J-SAM; a small CNN) behind the same model interface.
- :mod:`linsam.cifar.budget`: FLOPs, memory and step times of the compiled programs.
- :mod:`linsam.cifar.presets`, :mod:`linsam.cifar.plot`.

Needs the optional extra ``gpu`` (flax, optax, pillow). :mod:`linsam.cifar.data` alone needs
only pillow; the Flax parts are imported on first use. The command line is ``linsam cifar``;
docs/cifar.md describes the results schema and the budget arithmetic.
"""

from __future__ import annotations

import importlib

from linsam.cifar.data import CIFAR10, CLASSES, DatasetError, load_cifar10  # noqa: F401

_LAZY = {
    "CifarConfig": "linsam.cifar.train",
    "run": "linsam.cifar.train",
    "run_method": "linsam.cifar.train",
    "validate_config": "linsam.cifar.train",
    "aggregate": "linsam.cifar.train",
    "finalize": "linsam.cifar.train",
    "METHODS": "linsam.cifar.train",
    "ResNet18": "linsam.cifar.resnet",
    "make_model": "linsam.cifar.resnet",
    "PRESETS": "linsam.cifar.presets",
    "plot_curves": "linsam.cifar.plot",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'linsam.cifar' has no attribute {name!r}")


__all__ = ["CIFAR10", "CLASSES", "DatasetError", "load_cifar10", *_LAZY]
