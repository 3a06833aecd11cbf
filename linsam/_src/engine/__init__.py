"""The one sweep engine (public face: :mod:`linsam.simulate`).

``config`` (SimConfig, the edge where names become values), ``metrics`` (the recorded metrics,
one definition), ``scan`` (generic backend), ``linear`` (GEMM / Gram backend), ``shard``
(devices), ``results`` (SweepResult, xarray, save/load), ``sweep`` (:func:`simulate`).
"""
