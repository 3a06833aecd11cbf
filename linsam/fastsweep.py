"""Fast linear-logistic GD / 1-SAM sweeps and run-axis sharding (code in :mod:`linsam._src.fastsweep`)."""

from linsam._src.fastsweep import *  # noqa: F401,F403
from linsam._src.fastsweep import __all__  # noqa: F401
