"""One definition per model (code of the public :mod:`linsam.models`)."""

from linsam._src.models._common import SAMPoint, hypot, row_norms, vector_norm
from linsam._src.models.dln import DLN, DLNParams
from linsam._src.models.generic import Generic
from linsam._src.models.logreg import LogReg
from linsam._src.models.mlp import MLP, MLPParams
from linsam._src.models.softmax import Softmax

__all__ = ["LogReg", "Softmax", "DLN", "DLNParams", "MLP", "MLPParams", "Generic", "SAMPoint", "row_norms", "vector_norm", "hypot"]
