"""Methods are values: pytrees with rho as a leaf, checked once when built, parsed at the edge."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linsam import rules
from linsam.models import LogReg

from core_cases import make_problem, tree_rel_err


def test_names_and_classes_are_one_table():
    assert rules.METHODS == ("gd", "nsam", "one_sam", "lsam", "jsam", "jreg", "jreg_fixed", "linear_loss",
                             "shifted_loss", "large_step", "weight_decay")
    assert rules.CONTROLS == rules.METHODS[-4:]
    assert [rules.METHOD_CLASSES[m].knob for m in rules.CONTROLS] == [None, "shift", "lr_mult", "decay"]
    assert all(cls.name == name for name, cls in rules.METHOD_CLASSES.items())
    assert rules.SAM_METHODS == ("nsam", "one_sam", "lsam", "jsam", "jreg")
    assert not rules.GD.uses_rho and not rules.JRegFixed.uses_rho and rules.OneSAM.uses_rho


def test_hyper_parameters_are_leaves_and_chunk_size_is_static():
    m = rules.OneSAM(0.3, chunk_size=4)
    leaves, treedef = jax.tree_util.tree_flatten(m)
    assert leaves == [0.3]
    assert jax.tree_util.tree_unflatten(treedef, [0.5]) == rules.OneSAM(0.5, chunk_size=4)
    assert jax.tree_util.tree_leaves(rules.JRegFixed(0.1, 0.2)) == [0.1, 0.2]
    assert jax.tree_util.tree_leaves(rules.GD()) == []
    # frozen and hashable (usable as a static argument when concrete)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.rho = 1.0
    assert hash(rules.NSAM(0.1)) == hash(rules.NSAM(0.1)) and rules.NSAM(0.1) != rules.OneSAM(0.1)


def test_vmap_over_rho_equals_a_loop(getkey):
    """A batched method value sweeps rho under vmap (rho traced), matching one call per rho."""
    model, w, X, t = make_problem("logreg", getkey(), 7, 5, 3)
    rhos = jnp.array([0.0, 0.2, 1.3])
    batched = jax.jit(jax.vmap(lambda m: m.direction(model, w, X, t)))(rules.OneSAM(rhos))
    for i, rho in enumerate(rhos):
        one = rules.direction(rules.OneSAM(float(rho)), model, w, X, t)
        assert tree_rel_err(batched[i], one) <= 1e-14


def test_unflatten_does_not_revalidate():
    """JAX rebuilds values with placeholders (vmap in_axes, tracers): only users' builds are checked."""
    treedef = jax.tree_util.tree_structure(rules.OneSAM(0.1))
    odd = jax.tree_util.tree_unflatten(treedef, [object()])
    assert isinstance(odd, rules.OneSAM)
    out = jax.vmap(lambda m, x: m.rho * x, in_axes=(rules.OneSAM(0), None))(rules.OneSAM(jnp.ones(2)), 3.0)
    np.testing.assert_array_equal(out, [3.0, 3.0])


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: rules.OneSAM(-0.1), "rho must be a finite number >= 0"),
        (lambda: rules.NSAM(float("inf")), "rho must be a finite number >= 0"),
        (lambda: rules.LSAM(None), "rho must be a real number >= 0"),
        (lambda: rules.JSAM([1, 2]), r"rho must be a real number >= 0 .*got list \[1, 2\]"),
        (lambda: rules.JReg("big"), "rho must be a real number"),
        (lambda: rules.OneSAM(0.1, chunk_size=0), "chunk_size must be an integer >= 1"),
        (lambda: rules.JRegFixed(-1.0, 0.0), "lam_last must be a finite number >= 0"),
        (lambda: rules.JRegFixed(0.0, float("nan")), "lam_act must be a finite number >= 0"),
    ],
)
def test_values_are_checked_when_built(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_traced_values_skip_the_build_check():
    """Inside jit a negative rho cannot be seen: the build check skips tracers (see the checked mode)."""
    out = jax.jit(lambda r: rules.OneSAM(r).rho * 2)(-1.0)
    assert float(out) == -2.0


def test_method_parses_names_at_the_edge():
    assert rules.method("one_sam", rho=0.1) == rules.OneSAM(0.1)
    assert rules.method("gd") == rules.GD()
    assert rules.method("jreg_fixed", lam_last=0.1, lam_act=0.2) == rules.JRegFixed(0.1, 0.2)
    with pytest.raises(ValueError, match="method must be one of gd, nsam, one_sam"):
        rules.method("sam2", rho=0.1)
    with pytest.raises(ValueError, match="method 'gd' takes no hyper-parameters; got unexpected rho"):
        rules.method("gd", rho=0.1)
    with pytest.raises(ValueError, match="method 'one_sam' takes rho, chunk_size; got unexpected lam_last"):
        rules.method("one_sam", rho=0.1, lam_last=0.0)


def test_validated_entry_refuses_a_batched_value_and_stray_keywords(getkey):
    model, w, X, t = make_problem("logreg", getkey(), 5, 3, 1)
    with pytest.raises(ValueError, match=r"rho must be a scalar for one direction, got shape \(2,\)"):
        rules.direction(rules.OneSAM(jnp.array([0.1, 0.2])), model, w, X, t)
    with pytest.raises(TypeError, match="rho"):  # rho belongs to the method value, not to the call
        rules.direction(rules.OneSAM(0.1), model, w, X, t, rho=0.2)
    with pytest.raises(ValueError, match="method must be a linsam.rules method value"):
        rules.direction(object(), model, w, X, t)


def test_validated_entry_takes_only_method_values(getkey):
    """Names are parsed at the edge (rules.method); the entry refuses a string with a message saying so."""
    model, w, X, t = make_problem("logreg", getkey(), 5, 3, 1)
    new = rules.direction(rules.OneSAM(0.4), model, w, X, t)
    assert tree_rel_err(rules.direction(rules.method("one_sam", rho=0.4), model, w, X, t), new) == 0.0
    with pytest.raises(ValueError, match="method must be a linsam.rules method value"):
        rules.direction("one_sam", model, w, X, t)


def test_method_can_drop_shared_settings():
    shared = dict(rho=0.2, lam_last=0.1, lam_act=0.0)
    assert rules.method("gd", ignore_extra=True, **shared) == rules.GD()
    assert rules.method("lsam", ignore_extra=True, **shared) == rules.LSAM(0.2)
    assert rules.method("jreg_fixed", ignore_extra=True, **shared) == rules.JRegFixed(0.1, 0.0)
