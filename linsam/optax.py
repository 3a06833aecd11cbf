"""Public API of ``linsam.optax``: the SAM family as optax transformations (code in ``linsam._src.optax``)."""

from linsam._src.optax import from_method, gd, jreg, jreg_fixed, jsam, lsam, nsam, one_sam  # noqa: F401

__all__ = ["from_method", "gd", "nsam", "one_sam", "lsam", "jsam", "jreg", "jreg_fixed"]
