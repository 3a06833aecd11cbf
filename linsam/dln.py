"""Public API of ``linsam.dln`` (the code lives in ``linsam._src.dln``)."""

from linsam._src.dln import *  # noqa: F401,F403
from linsam._src.dln import __all__  # noqa: F401
