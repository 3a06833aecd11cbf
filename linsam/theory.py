"""Analytic predictions: Lemma 3.1 weights and gradient-norm ratios, the Proposition 4.1
J-SAM penalty, early-stopping summaries, confidence intervals (code in
:mod:`linsam._src.theory`)."""

from linsam._src.theory import (  # noqa: F401
    EarlyStopping,
    PairedCI,
    clean_noisy_grad_ratio,
    dln_one_sam_margins,
    early_stopping,
    jsam_penalty,
    jsam_penalty_grad,
    logreg_margins,
    mean_ci,
    one_sam_grad_norms,
    one_sam_weights,
)

__all__ = [
    "EarlyStopping",
    "PairedCI",
    "clean_noisy_grad_ratio",
    "dln_one_sam_margins",
    "early_stopping",
    "jsam_penalty",
    "jsam_penalty_grad",
    "logreg_margins",
    "mean_ci",
    "one_sam_grad_norms",
    "one_sam_weights",
]
