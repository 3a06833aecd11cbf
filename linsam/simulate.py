"""The one sweep engine (public API; code in :mod:`linsam._src.engine`).

``simulate(config)`` trains methods x rhos x seeds of a :class:`SimConfig`, choosing per method
the linear backend (GEMM / Gram matrix) where it applies and the generic ``lax.scan`` backend
otherwise, with the seed axis sharded over every JAX device; results are a
:class:`SweepResult` (``.ds``: an ``xarray.Dataset`` with dims rule, rho, seed, step).
"""

from linsam._src.simulate import (  # noqa: F401
    AXES,
    BACKENDS,
    DLN_METRICS,
    METRICS,
    MODELS,
    SimConfig,
    SweepResult,
    Trajectory,
    backend_of,
    estimate_memory,
    held_out_sample,
    validation_sample,
    initial_params,
    load_config,
    mean_classifier_accuracy,
    record_metrics,
    record_steps,
    run,
    shipped_configs,
    simulate,
    training_data,
    training_sets,
    uses_test_sample,
)

__all__ = [
    "AXES",
    "BACKENDS",
    "DLN_METRICS",
    "METRICS",
    "MODELS",
    "SimConfig",
    "SweepResult",
    "Trajectory",
    "backend_of",
    "estimate_memory",
    "held_out_sample",
    "validation_sample",
    "initial_params",
    "load_config",
    "mean_classifier_accuracy",
    "record_metrics",
    "record_steps",
    "run",
    "shipped_configs",
    "simulate",
    "training_data",
    "training_sets",
    "uses_test_sample",
]
