r"""Named settings for ``linsam cifar --preset NAME``; explicit flags override them.

``paper``: the setting reported for the paper (from a secondary source, see
../shared/THEORY.md): batch 128, lr 0.01, weight decay 5e-4, 200 epochs, rho 0.01, ResNet-18,
30% symmetric noise, LayerNorm. Not known and chosen here: momentum (0.9), the learning-rate
schedule (cosine), augmentation (standard crop + flip, on), which LayerNorm axes (channels),
the regulariser's form and coefficients (Prop. 4.1 defaults, see :mod:`linsam.cifar.train`).

``budget``: sized so that SGD, 1-SAM and J-SAM at 30% noise fit in one 8-minute H200 call
(docs/cifar.md, "Budget preset", has the arithmetic): full-width ResNet-18 in bf16 on a
10,000-image random training subset, constant lr 0.01, no augmentation (memorisation of the
noisy labels, which makes SGD's test accuracy peak and fall, then shows within a few
epochs), and a wall-clock cap per method so the call cannot overrun; the results record
which epochs ran.

``tiny``: a CPU smoke run (narrow network, 1,024 images, 2 epochs), minutes on a laptop.
"""

from __future__ import annotations

#: Common fields of every preset (CifarConfig names); ``methods`` is the default --method list.
PRESETS: dict[str, dict] = {
    "paper": dict(
        methods=("sgd", "one_sam", "lsam", "jsam", "reg"),
        noise_rate=0.3, noise_kind="symmetric", epochs=200, batch_size=128, lr=0.01, momentum=0.9,
        weight_decay=5e-4, schedule="cosine", rho=0.01, width=64, depth=18, norm="layer",
        compute_dtype="float32", chunk_size=32, augment=True, train_subset=None, eval_train_size=10000,
        eval_batch_size=1000, log_every=100,
    ),
    "budget": dict(
        methods=("sgd", "one_sam", "jsam"),
        noise_rate=0.3, noise_kind="symmetric", epochs=30, batch_size=128, lr=0.01, momentum=0.9,
        weight_decay=5e-4, schedule="constant", rho=0.01, width=64, depth=18, norm="layer",
        compute_dtype="bfloat16", chunk_size=64, augment=False, train_subset=10000, eval_train_size=5000,
        eval_batch_size=1000, log_every=20,
    ),
    "tiny": dict(
        methods=("sgd", "one_sam"),
        noise_rate=0.3, noise_kind="symmetric", epochs=2, batch_size=64, lr=0.05, momentum=0.9,
        weight_decay=5e-4, schedule="constant", rho=0.05, width=8, depth=18, norm="layer",
        compute_dtype="float32", chunk_size=16, augment=True, train_subset=1024, eval_train_size=1024,
        eval_batch_size=500, log_every=4,
    ),
}

#: Wall-clock cap per method (seconds, compile included) of the budget preset; the sum plus
#: start-up (about 40 s: imports, JPEG decode on a fresh machine) stays under 480 s.
BUDGET_TIME_LIMITS = {"sgd": 100.0, "one_sam": 160.0, "jsam": 160.0}
BUDGET_TOTAL_S = 480


def preset_fields(name: str) -> dict:
    """The CifarConfig fields of preset ``name`` (without ``methods``)."""
    if name not in PRESETS:
        raise ValueError(f"--preset must be one of {', '.join(PRESETS)}; got {name!r}")
    return {k: v for k, v in PRESETS[name].items() if k != "methods"}


def preset_time_limit(name: str, method: str) -> float | None:
    if name == "budget":
        return BUDGET_TIME_LIMITS.get(method, 100.0)
    return None
