"""Public API of ``linsam.rules``: the SAM family as values, one dispatch (code in ``linsam._src.rules``).

``GD()``, ``NSAM(rho)``, ``OneSAM(rho)``, ``LSAM(rho)``, ``JSAM(rho)``, ``JReg(rho)``,
``JRegFixed(lam_last, lam_act)``; ``method.direction(model, params, X, t)`` (hot path),
``direction(method, model, params, X, t)`` (validated entry), ``method(name, **hyper)`` (the
edge), ``checked(fn)`` (opt-in traced checks).
"""

from linsam._src.rules import (  # noqa: F401
    GD,
    JSAM,
    LSAM,
    METHOD_CLASSES,
    METHODS,
    NSAM,
    SAM_METHODS,
    JReg,
    JRegFixed,
    Method,
    OneSAM,
    batch_logits,
    batch_loss,
    binary_logistic_loss,
    checked,
    direction,
    example_loss,
    gd,
    jacobian_penalty,
    jreg,
    jreg_fixed,
    jsam,
    lsam,
    method,
    nsam,
    one_sam,
    per_example_grads,
    perturbation,
    safe_norm,
    safe_normalize,
    softmax_cross_entropy,
    tree_add,
    tree_scale,
    validate_inputs,
)
