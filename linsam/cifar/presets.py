r"""Named settings for ``linsam cifar --preset NAME``; explicit flags override them.

``paper``: the setting reported for the paper (from a secondary source, see
../shared/THEORY.md): batch 128, lr 0.01, weight decay 5e-4, 200 epochs, rho 0.01, ResNet-18,
30% symmetric noise, LayerNorm. Not known and chosen here: momentum (0.9), the learning-rate
schedule (cosine), augmentation (standard crop + flip, on), which LayerNorm axes (channels),
the regulariser's form and coefficients (Prop. 4.1 defaults, see :mod:`linsam.cifar.train`).

``budget``: sized so that SGD (``gd``), 1-SAM and J-SAM at 30% noise fit in one call of about 5.5
minutes on one H200, twice within a 15-minute device window (docs/cifar.md, "Budget preset",
has the arithmetic): full-width ResNet-18 in true float32 on a 10,000-image random training
subset, constant lr 0.01, no augmentation (memorisation of the noisy labels, which makes
SGD's test accuracy peak and fall, then shows within a few epochs), and a total time limit
split over the methods (:data:`PRESET_TIMING`) so the call cannot overrun; the results
record which epochs ran. float32, not bf16: the SAM rules run in float32 anyway
(:func:`linsam.cifar.train.rule_compute_dtype`), and SGD in bf16 would differ from them in
precision as well as in method.

``tiny``: a CPU smoke run (narrow network, 1,024 images, 2 epochs), minutes on a laptop.

``cpu``: the whole comparison on 2 CPU cores in under 30 minutes (docs/cifar.md, "CPU
preset"): SGD (``gd``), 1-SAM, L-SAM, J-SAM and the fixed-coefficient regulariser
(``jreg_fixed``; ``jreg`` has no closed form on the MLP and runs per example by autodiff, far
too slow here) on 10,000 training images with 30% symmetric noise, three seeds, every epoch
evaluated on all 10,000 test images. The network is a ReLU MLP on the 3,072 pixels (one hidden
layer of 512 units): measured against a small CNN, it trains about 15x more images per second
on these cores and its 1-SAM, L-SAM and J-SAM have closed forms (:mod:`linsam.cifar.small`),
so a SAM epoch costs about an SGD epoch. Constant lr, no augmentation: SGD's test accuracy
peaks within a few epochs and falls as it fits the noisy labels. It is a CPU proxy of the
paper's ResNet-18 experiment, not that experiment.
"""

from __future__ import annotations

#: Common fields of every preset (CifarConfig names); ``methods`` is the default --method list
#: (the library's method names, :data:`linsam.rules.METHODS`); ``seeds``, where present, the
#: default --seeds (one run per seed, combined with paired intervals).
PRESETS: dict[str, dict] = {
    "paper": dict(
        methods=("gd", "one_sam", "lsam", "jsam", "jreg_fixed"),
        noise_rate=0.3, noise_kind="symmetric", epochs=200, batch_size=128, lr=0.01, momentum=0.9,
        weight_decay=5e-4, schedule="cosine", rho=0.01, width=64, depth=18, norm="layer",
        compute_dtype="float32", chunk_size=32, augment=True, train_subset=None, eval_train_size=10000,
        eval_batch_size=1000, log_every=100,
    ),
    "budget": dict(
        methods=("gd", "one_sam", "jsam"),
        noise_rate=0.3, noise_kind="symmetric", epochs=30, batch_size=128, lr=0.01, momentum=0.9,
        weight_decay=5e-4, schedule="constant", rho=0.01, width=64, depth=18, norm="layer",
        compute_dtype="float32", chunk_size=64, augment=False, train_subset=10000, eval_train_size=5000,
        eval_batch_size=1000, log_every=20,
    ),
    "cpu": dict(
        methods=("gd", "one_sam", "lsam", "jsam", "jreg_fixed"), seeds=(0, 1, 2), arch="mlp",
        noise_rate=0.3, noise_kind="symmetric", epochs=15, batch_size=128, lr=0.01, momentum=0.9,
        weight_decay=5e-4, schedule="constant", rho=0.02, width=512, depth=1, norm="none",
        compute_dtype="float32", chunk_size=None, augment=False, train_subset=10000, eval_train_size=5000,
        eval_batch_size=2500, log_every=78,
    ),
    "tiny": dict(
        methods=("gd", "one_sam"),
        noise_rate=0.3, noise_kind="symmetric", epochs=2, batch_size=64, lr=0.05, momentum=0.9,
        weight_decay=5e-4, schedule="constant", rho=0.05, width=8, depth=18, norm="layer",
        compute_dtype="float32", chunk_size=16, augment=True, train_subset=1024, eval_train_size=1024,
        eval_batch_size=500, log_every=4,
    ),
}

#: Time plan of the presets that have one: ``total_time_limit_s``, seconds for the whole
#: ``linsam cifar`` call counted from the start of the process (``--total-time-limit``), split
#: over the methods by ``time_shares`` (the time left when a method starts, in proportion to its
#: share among the methods still to run, so one that ends early leaves its time to the rest).
#: The budget preset's numbers: docs/cifar.md, "Budget preset"; bench/gpu_cifar.sh passes its
#: own total, inside its guard.
PRESET_TIMING: dict[str, dict] = {
    "budget": {"total_time_limit_s": 310.0, "time_shares": {"gd": 1.0, "one_sam": 2.0, "jsam": 2.0}},
    # 29 minutes for the whole call (three seeds, each an equal part of the time left); the
    # preset is sized for about 20 on a quiet machine, so the limit is a guard, not the plan.
    "cpu": {"total_time_limit_s": 1740.0,
            "time_shares": {"gd": 1.0, "one_sam": 1.2, "lsam": 1.2, "jsam": 1.2, "jreg_fixed": 1.0}},
}


def preset_fields(name: str) -> dict:
    """The CifarConfig fields of preset ``name`` (without ``methods``)."""
    if name not in PRESETS:
        raise ValueError(f"--preset must be one of {', '.join(PRESETS)}; got {name!r}")
    return {k: v for k, v in PRESETS[name].items() if k not in ("methods", "seeds")}


def preset_seeds(name: str) -> tuple[int, ...] | None:
    """The seeds a preset runs (``cpu``: three), or None (one run, ``--seed``)."""
    return PRESETS[name].get("seeds")


def preset_timing(name: str) -> dict:
    """``{"total_time_limit_s": float | None, "time_shares": dict | None}`` of preset ``name``."""
    t = PRESET_TIMING.get(name, {})
    return {"total_time_limit_s": t.get("total_time_limit_s"), "time_shares": t.get("time_shares")}


def preset_time_limit(name: str, method: str) -> float | None:
    """Per-method cap of a preset (none has one: the budget preset splits a total, see
    :data:`PRESET_TIMING`)."""
    return None
