r"""One definition per model: every formula of a model lives in its class, once.

``LogReg()``, ``Softmax(num_classes=K)``, ``DLN(hidden=h)``, ``MLP(hidden=(h,))`` / ``MLP(hidden=(h1, h2))`` (ReLU, closed forms) and
``Generic(apply, loss_from_logits, ...)`` (any pytree model, members by autodiff). Each is a
frozen, hashable dataclass (a static argument of ``jit``) with the members ``apply``,
``apply_batch``, ``loss_from_logits``, ``num_classes``, ``init``, ``margins``,
``jacobian_norm``, ``one_sam_point``, ``end_to_end``, ``features``, ``last_layer``, ``norms``
and ``closed_forms`` (see docs/architecture.md). The code lives in ``linsam._src.models``.
"""

from linsam._src.models import DLN, DLNParams, MLP, Generic, LogReg, MLPParams, SAMPoint, Softmax, hypot, row_norms, vector_norm  # noqa: F401

__all__ = ["LogReg", "Softmax", "DLN", "DLNParams", "MLP", "MLPParams", "Generic", "SAMPoint", "row_norms", "vector_norm", "hypot"]
