"""Bad input is refused with a ValueError naming the argument and what is allowed."""

import jax.numpy as jnp
import numpy as np
import pytest

from linsam import cli, dln, logreg, rules, softmax
from linsam.models import DLN, DLNParams, Softmax


def _logreg_problem(n=4, d=3):
    X = jnp.asarray(np.random.default_rng(0).normal(size=(n, d)))
    t = jnp.array([1.0, -1.0, 1.0, -1.0][:n])
    return jnp.ones(d), X, t


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda w, X, t: (w, X, t, -0.1), r"rho must be a finite number >= 0"),
        (lambda w, X, t: (w, X, t, float("nan")), r"rho must be a finite number >= 0"),
        (lambda w, X, t: (w, X, t, "big"), r"rho must be a real number"),
        (lambda w, X, t: (w, X[0], t, 0.1), r"X must have shape \(n, d\)"),
        (lambda w, X, t: (w, X.astype(jnp.int32), t, 0.1), r"X must be a floating-point array"),
        (lambda w, X, t: (w, X.at[1, 2].set(jnp.nan), t, 0.1), r"X contains 1 NaN or inf"),
        (lambda w, X, t: (w, X.at[0, 0].set(jnp.inf), t, 0.1), r"X contains 1 NaN or inf"),
        (lambda w, X, t: (jnp.ones(5), X, t, 0.1), r"w must have shape \(3,\)"),
        (lambda w, X, t: (w.at[0].set(jnp.nan), X, t, 0.1), r"w contains 1 NaN"),
        (lambda w, X, t: (w, X, t[:3], 0.1), r"t must have shape \(4,\)"),
        (lambda w, X, t: (w, X, jnp.array([1.0, 0.0, 1.0, -1.0]), 0.1), r"t \(binary labels\) must be -1 or \+1"),
        (lambda w, X, t: (w, X, jnp.array([1.0, 2.0, 1.0, -1.0]), 0.1), r"must be -1 or \+1"),
    ],
)
def test_logreg_bad_inputs(mutate, match):
    w, X, t, rho = mutate(*_logreg_problem())
    with pytest.raises(ValueError, match=match):
        logreg.one_sam(w, X, t, rho)


def test_generic_rules_bad_inputs():
    w, X, t = _logreg_problem()
    with pytest.raises(ValueError, match="rho must be a finite number >= 0"):
        rules.one_sam(logreg.MODEL, w, X, t, -1.0)
    with pytest.raises(ValueError, match="must be -1 or"):
        rules.jsam(logreg.MODEL, w, X, t * 3, 0.1)
    with pytest.raises(ValueError, match="w contains 1 NaN"):
        rules.gd(logreg.MODEL, w.at[0].set(jnp.nan), X, t)
    from linsam.models import Generic

    generic = Generic(apply=logreg.MODEL.apply, loss_from_logits=rules.binary_logistic_loss)
    with pytest.raises(ValueError, match="params contains 1 NaN"):
        rules.gd(generic, w.at[0].set(jnp.nan), X, t)
    with pytest.raises(ValueError, match="X contains"):
        rules.nsam(logreg.MODEL, w, X.at[0, 0].set(jnp.nan), t, 0.1)
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        rules.one_sam(logreg.MODEL, w, X, t, 0.1, chunk_size=0)
    with pytest.raises(ValueError, match="method must be one of gd, nsam"):
        rules.method("sam2")
    with pytest.raises(ValueError, match="lam_last must be a finite number >= 0"):
        rules.jreg_fixed(logreg.MODEL, w, X, t, lam_last=-1.0, lam_act=0.0)


def test_softmax_bad_labels_and_shapes():
    X = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)))
    W = jnp.zeros((3, 3))
    model = Softmax(3)
    with pytest.raises(ValueError, match=r"t \(class ids\) must be in \[0, 3\)"):
        rules.direction(rules.OneSAM(0.1), model, W, X, jnp.array([0, 1, 3, 2]))
    with pytest.raises(ValueError, match=r"t \(class ids\) must be in \[0, 3\)"):
        rules.direction(rules.GD(), model, W, X, jnp.array([0, -1, 1, 2]))
    with pytest.raises(ValueError, match=r"must be integers"):
        rules.direction(rules.GD(), model, W, X, jnp.array([0.0, 1.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"W must have shape \(K, 3\)"):
        rules.direction(rules.GD(), model, jnp.zeros((3, 4)), X, jnp.array([0, 1, 1, 2]))
    with pytest.raises(ValueError, match=r"W must have shape \(3, 3\)"):
        rules.direction(rules.GD(), model, jnp.zeros((4, 3)), X, jnp.array([0, 1, 1, 2]))
    with pytest.raises(ValueError, match=r"t \(class ids\) must be in \[0, 3\)"):
        softmax.perturbed_logits(W, X, jnp.array([0, 1, 3, 2]), 0.1)
    with pytest.raises(ValueError, match=r"class ids\) must be in \[0, 3\)"):
        rules.gd(softmax.make_model(3), W, X, jnp.array([0, 1, 5, 2]))
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        softmax.make_model(1)


def test_dln_bad_params():
    X = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)))
    t = jnp.array([1.0, -1.0, 1.0, -1.0])
    model = DLN()
    with pytest.raises(ValueError, match=r"params.W must have shape \(2, 3\)"):
        rules.direction(rules.OneSAM(0.1), model, DLNParams(jnp.ones(2), jnp.ones((2, 4))), X, t)
    with pytest.raises(ValueError, match=r"params must be a linsam.dln.DLNParams"):
        rules.direction(rules.GD(), model, (jnp.ones(2), jnp.ones((2, 3))), X, t)
    with pytest.raises(ValueError, match=r"params.v contains 1 NaN"):
        rules.direction(rules.GD(), model, DLNParams(jnp.array([1.0, jnp.nan]), jnp.ones((2, 3))), X, t)
    with pytest.raises(ValueError, match=r"params.v must have shape \(3,\)"):
        rules.direction(rules.GD(), DLN(hidden=3), DLNParams(jnp.ones(2), jnp.ones((2, 3))), X, t)
    with pytest.raises(ValueError, match=r"params.W must have shape \(2, 3\)"):
        dln.jacobian_norm(DLNParams(jnp.ones(2), jnp.ones((2, 4))), X)
    with pytest.raises(ValueError, match="hidden must be an integer >= 1"):
        dln.init(None, 3, 0)
    with pytest.raises(ValueError, match="scale must be a finite number >= 0"):
        dln.init(None, 3, 2, scale=-1.0)


def test_cli_version_and_demo(capsys):
    import linsam

    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert linsam.__version__ in capsys.readouterr().out
    assert cli.main(["demo", "--rho", "0.5"]) == 0
    out = capsys.readouterr().out
    import re

    ratio_gd, ratio_sam = map(float, re.search(r"ratio: GD ([0-9.]+)\s+1-SAM ([0-9.]+)", out).groups())
    assert ratio_sam > ratio_gd  # the demo's point: 1-SAM up-weights the (clean) high-margin examples
    with pytest.raises(ValueError, match="rho must be a finite number >= 0"):
        cli.main(["demo", "--rho", "-1"])


def test_readme_test_command_is_what_ci_runs():
    """README command (2) and .ci/run run the same test command."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    ci = (root / ".ci" / "run").read_text()
    test_cmd = [line for line in readme.splitlines() if "pytest" in line and line.startswith("python3 -m venv")]
    assert len(test_cmd) == 1, "README must give exactly one install-and-test command"
    assert test_cmd[0].strip() in ci
