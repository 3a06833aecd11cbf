"""linsam: a theory-verification toolkit for "Why is SAM Robust to Label Noise?".

Baek, Kolter, Raghunathan, ICLR 2024 (arXiv:2405.03676). Closed-form and autodiff
SAM-family update rules on logistic regression, linear softmax and 2-layer deep
linear networks; symbolic derivations; simulators; figures and paper checks.

``linsam.grad(method, model)`` returns ``sam_grad(params, (X, t)) -> direction``, the rule's
direction as a gradient for any optax optimizer (:mod:`linsam.optax`). It is imported on first
use, so ``import linsam`` stays light (the command line's ``--help`` does not load JAX).
"""

__version__ = "0.1.0"
__all__ = ["grad", "__version__"]


def __getattr__(name: str):
    if name == "grad":
        from linsam._src.optax import grad

        return grad
    raise AttributeError(f"module 'linsam' has no attribute {name!r}")
