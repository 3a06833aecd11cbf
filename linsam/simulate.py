"""Training simulators and sweeps (public API; code in :mod:`linsam._src.simulate`)."""

from linsam._src.simulate import (  # noqa: F401
    AXES,
    DLN_METRICS,
    METRICS,
    MODELS,
    SimConfig,
    SweepResult,
    Trajectory,
    initial_params,
    load_config,
    mean_classifier_accuracy,
    record_metrics,
    record_steps,
    run,
    shipped_configs,
    simulate,
    training_data,
)

__all__ = [
    "AXES",
    "DLN_METRICS",
    "METRICS",
    "MODELS",
    "SimConfig",
    "SweepResult",
    "Trajectory",
    "initial_params",
    "load_config",
    "mean_classifier_accuracy",
    "record_metrics",
    "record_steps",
    "run",
    "shipped_configs",
    "simulate",
    "training_data",
]
