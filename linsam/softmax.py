"""Public API of ``linsam.softmax`` (the code lives in ``linsam._src.softmax``)."""

from linsam._src.softmax import *  # noqa: F401,F403
from linsam._src.softmax import __all__  # noqa: F401
