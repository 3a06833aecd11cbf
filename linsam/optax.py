"""Public API of ``linsam.optax``: the SAM family as a gradient function and as optax transformations
(code in ``linsam._src.optax``)."""

from linsam._src.optax import (  # noqa: F401
    from_method, gd, grad, jreg, jreg_fixed, jsam, large_step, linear_loss, lsam, nsam, one_sam, shifted_loss,
    weight_decay,
)

__all__ = ["grad", "from_method", "gd", "nsam", "one_sam", "lsam", "jsam", "jreg", "jreg_fixed", "linear_loss",
           "shifted_loss", "large_step", "weight_decay"]
