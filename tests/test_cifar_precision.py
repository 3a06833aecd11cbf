"""Issue 15.4: with bf16 compute the SAM perturbation must survive.

At the budget preset's rho (0.01) a per-weight perturbation is far below bf16's resolution, so
the 1-SAM signal g(theta + eps) - g(theta) computed through a bf16 network is mostly rounding
noise (measured on this test's network: cosine 0.59 with the float32 signal; the issue
measured 0.67-0.83 at width 8, depth 18). The trainer runs the rules of the perturbed methods
in float32 (``rule_compute_dtype``) and float32 is true float32 on a GPU (``Precision.HIGHEST``,
not TF32, which would round the perturbation away too).

Tolerance: cosine >= 0.99 between the bf16 configuration's signal and the float32 one (the
issue's bar); the raw bf16 network must stay below 0.9 on the same data, so the test keeps
showing the effect it guards against.
"""

import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("optax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from linsam import rules  # noqa: E402
from linsam.cifar import data as cdata  # noqa: E402
from linsam.cifar import presets, resnet  # noqa: E402
from linsam.cifar import train as T  # noqa: E402

OPTS = {"xla_backend_optimization_level": 0}


def _flat(tree):
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in jax.tree_util.tree_leaves(tree)])


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


_SIGNALS: dict = {}


def _signal(model, params, X, t, rho):
    """mean_i g_i(theta + eps_i) - mean_i g_i(theta): what 1-SAM adds to the gradient (memoised
    per model object: the trainer hands the bf16 and the float32 configuration one model)."""
    if id(model) in _SIGNALS:
        return _SIGNALS[id(model)][1]

    def direction(method):
        fn = jax.jit(lambda p, X, t: method.direction(model, p, X, t))
        return _flat(fn.lower(params, X, t).compile(OPTS)(params, X, t))

    out = direction(rules.OneSAM(jnp.float32(rho))) - direction(rules.GD())
    _SIGNALS[id(model)] = (model, out)  # keeps the model alive, so its id is not reused
    return out


@pytest.mark.slow  # a GPU configuration, ~12 s on 2 CPU cores (suite budget)
def test_bf16_configuration_keeps_the_one_sam_signal():
    rho = presets.PRESETS["budget"]["rho"]
    assert rho == 0.01
    width, depth, size, n = 8, 6, 8, 16
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    mean, std = cdata.channel_stats(x)
    X = cdata.preprocess(jnp.asarray(x), jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32))
    X = X.astype(jnp.float32)
    t = jnp.asarray(np.arange(n, dtype=np.int32) % 10)

    def spec(method, dtype):
        cfg = T.validate_config(T.CifarConfig(method=method, width=width, depth=depth, compute_dtype=dtype,
                                              batch_size=n, chunk_size=None))
        return T.program_spec(cfg)

    s16, s32 = spec("one_sam", "bfloat16"), spec("one_sam", "float32")
    assert s16.rule_dtype == "float32" and spec("gd", "bfloat16").rule_dtype == "bfloat16"
    params = resnet.init_variables(s32.net(), 0, (size, size, 3))["params"]
    ref = _signal(T.rule_model(T.rule_spec(s32)), params, X, t, rho)
    got = _signal(T.rule_model(T.rule_spec(s16)), params, X, t, rho)
    assert _cos(got, ref) >= 0.99, f"bf16 configuration: cosine {_cos(got, ref):.4f} with the float32 1-SAM signal"
    raw = _signal(resnet.make_model(s16.net()), params, X, t, rho)  # the bf16 network itself
    assert _cos(raw, ref) < 0.9, f"the bf16 network kept the signal (cosine {_cos(raw, ref):.4f}): test too easy"


def test_float32_means_highest_precision():
    """A GPU runs float32 convolutions in TF32 by default; the network asks for HIGHEST."""
    x = jnp.zeros((1, 8, 8, 3), jnp.float32)
    for dtype, want in (("float32", "HIGHEST"), ("bfloat16", None)):
        net = resnet.ResNet18(width=4, stage_sizes=(1,), compute_dtype=dtype)
        v = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), x))
        jaxpr = jax.make_jaxpr(lambda v, x: net.apply(v, x))(v, x)
        precs = [str(e.params.get("precision")) for e in jaxpr.jaxpr.eqns
                 if e.primitive.name in ("conv_general_dilated", "dot_general")]
        assert precs, "no convolution found"
        if want:
            assert all(want in p for p in precs), (dtype, precs)
        else:
            assert not any("HIGHEST" in p for p in precs), (dtype, precs)
