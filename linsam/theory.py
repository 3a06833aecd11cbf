"""Analytic predictions.

A priori (from the config alone, no sampled data, no simulated trajectory):
:func:`predict_curves`, the discrete-time dynamical mean-field theory of full-batch GD and
1-SAM for logistic regression on a Gaussian mixture with label noise (code in
:mod:`linsam._src.predict`; equations, derivation and measured error in docs/theory.md).

Identities on a recorded state: Lemma 3.1 weights and gradient-norm ratios, the Proposition
4.1 J-SAM penalty, early-stopping summaries (code in :mod:`linsam._src.theory`).
Confidence intervals live in :mod:`linsam.stats`.
"""

from linsam._src.predict import (  # noqa: F401
    PREDICT_NOISE_KINDS,
    PREDICTED,
    predict_curves,
    time_grid,
)
from linsam._src.theory import (  # noqa: F401
    EarlyStopping,
    clean_noisy_grad_ratio,
    dln_one_sam_margins,
    early_stopping,
    jsam_penalty,
    jsam_penalty_grad,
    logreg_margins,
    one_sam_grad_norms,
    one_sam_weights,
)

__all__ = [
    "EarlyStopping",
    "PREDICTED",
    "PREDICT_NOISE_KINDS",
    "clean_noisy_grad_ratio",
    "dln_one_sam_margins",
    "early_stopping",
    "jsam_penalty",
    "jsam_penalty_grad",
    "logreg_margins",
    "one_sam_grad_norms",
    "one_sam_weights",
    "predict_curves",
    "time_grid",
]
