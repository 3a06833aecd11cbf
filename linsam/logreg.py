"""Public API of ``linsam.logreg`` (the code lives in ``linsam._src.logreg``)."""

from linsam._src.logreg import *  # noqa: F401,F403
from linsam._src.logreg import __all__  # noqa: F401
