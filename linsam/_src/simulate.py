"""The sweep engine's module path (kept for its importers): the code lives in
:mod:`linsam._src.engine` (config, metrics, scan and linear backends, sharding, results);
configs are read by :mod:`linsam._src.configs`."""

from __future__ import annotations

from linsam._src.configs import load_config, shipped_configs  # noqa: F401  (the composed-config loader)
from linsam._src.engine.config import MODELS, SimConfig  # noqa: F401
from linsam._src.engine.metrics import DLN_METRICS, METRICS, record_metrics  # noqa: F401
from linsam._src.engine.results import AXES, SweepResult, _atomic_write  # noqa: F401
from linsam._src.engine.sweep import (  # noqa: F401
    BACKENDS,
    Trajectory,
    backend_of,
    check_memory,
    estimate_memory,
    held_out_sample,
    initial_params,
    mean_classifier_accuracy,
    record_steps,
    run,
    simulate,
    training_data,
    training_sets,
    uses_test_sample,
    validation_sample,
)
