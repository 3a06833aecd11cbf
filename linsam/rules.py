"""Public API of ``linsam.rules``: generic autodiff SAM-family rules (code in ``linsam._src.rules``)."""

from linsam._src.rules import (  # noqa: F401
    METHODS,
    SAM_METHODS,
    Model,
    batch_loss,
    binary_logistic_loss,
    direction,
    example_loss,
    gd,
    jacobian_penalty,
    jreg,
    jreg_fixed,
    jsam,
    lsam,
    nsam,
    one_sam,
    per_example_grads,
    safe_norm,
    safe_normalize,
    softmax_cross_entropy,
    unvalidated_direction,
)
