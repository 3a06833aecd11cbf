"""The SymPy derivations D1..D7: proofs hold, documents are fresh, and each result agrees with
linsam's closed forms at random float64 points.

Tolerance tiers (see STYLE.md):
- exact identities in float64: rtol 1e-10 (the derived expression and linsam's closed form are
  algebraically equal; only rounding separates them);
- the D6 order test: a fitted slope of log||R|| against log(rho), 2 +- 0.1 (a discretisation
  order, measured over a range of rho, not at one point).
"""

from __future__ import annotations

import os
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp

import derivations
from derivations import _core
from derivations import d1_logreg_one_sam as d1
from derivations import d2_lemma31 as d2
from derivations import d3_logreg_nsam as d3
from derivations import d4_linear_variants as d4
from derivations import d5_dln_jsam as d5
from derivations import d6_dln_one_sam as d6
from derivations import d7_softmax_one_sam as d7
from linsam import cli, dln, logreg, rules, softmax
from core_cases import autodiff_direction, closed_direction

RTOL = 1e-10  # exact identity, float64


def close(a, b, what, rtol=RTOL):
    a, b = np.asarray(a, float), np.asarray(b, float)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, float(np.max(np.abs(b)))),
                               err_msg=what)


def normal(key, shape, scale=1.0):
    return scale * np.asarray(jax.random.normal(key, shape, dtype=jnp.float64))


def labels(key, n):
    return np.where(np.asarray(jax.random.bernoulli(key, 0.5, (n,))), 1.0, -1.0)


# --------------------------------------------------------------------------------------------
# Proofs
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def results():
    return {r.name: r for r in derivations.check_all()}


def test_registry_lists_seven_results_with_uniform_interface():
    assert derivations.names() == ["D1", "D2", "D3", "D4", "D5", "D6", "D7"]
    for mod in derivations.modules():
        for attr in ("NAME", "SLUG", "TITLE", "derive", "steps", "check", "render"):
            assert hasattr(mod, attr), f"{mod.__name__} lacks {attr}"
        assert derivations.get(mod.NAME.lower()) is mod
        assert derivations.get(mod.SLUG) is mod
    with pytest.raises(ValueError, match="unknown derivation"):
        derivations.get("D99")


# D1, D2 are also proved by claim C1 in CI's `linsam reproduce --quick` step
@pytest.mark.parametrize("name", ["D1", "D2", "D3", "D4", "D5", "D6", "D7"])
def test_every_claim_is_proved(results, name):
    res = results[name]
    assert isinstance(res, derivations.Result)
    assert len(res.claims) >= 5, f"{name}: too few claims"
    failed = [(c.statement, c.error) for c in res.failed]
    assert res.holds, f"{name}: not proved: {failed}"


def test_check_all_is_fast_enough(results):
    # the budget for `linsam derive --check` is 60 s on 2 cores; CPU time, so that other load on
    # a shared machine does not make this flaky (SymPy runs on one core: CPU ~ wall when idle)
    assert sum(r.cpu_seconds for r in results.values()) < 45.0


# --------------------------------------------------------------------------------------------
# The machinery refuses what is false
# --------------------------------------------------------------------------------------------


def test_wrong_reweighting_is_refused():
    s = d1.derive()
    t, rho, z, xn = s.t, s.rho, s.z, s.xnorm
    wrong_weights = [
        sigmoid_ratio(-z + 2 * rho * xn, -z),   # twice the shift
        sigmoid_ratio(-z - rho * xn, -z),       # wrong sign
        sigmoid_ratio(-z + rho, -z),            # forgets ||x||
    ]
    for wt in wrong_weights:
        assert not _core.prove_equal(s.grad_at_eps, [wt * g for g in s.grad], s.cases)
    # the right one passes, and the wrong eps sign is refused
    assert _core.prove_equal(s.grad_at_eps, [s.weight * g for g in s.grad], s.cases)
    assert not _core.prove_equal(s.eps, [rho * t * xj / xn for xj in s.x], s.cases)


def sigmoid_ratio(a, b):
    return _core.sigmoid(a) / _core.sigmoid(b)


def test_sign_arguments_refuse_false_monotonicity():
    s = d2.derive()
    z, C, D = s.z, s.C, s.D
    g_neg = s.g_exp.xreplace({s.c: -D})
    # claiming "increasing" for C < 0 with all-positive factors must fail
    assert not _core.prove_sign_by_factors(sp.diff(g_neg, z), [sp.exp(z), sp.exp(D) - 1, (1 + sp.exp(z + D)) ** -2], +1)
    assert not _core.provably_positive(1 - sp.exp(C))
    assert _core.provably_positive(1 - sp.exp(-C))
    assert _core.provably_negative(1 - sp.exp(C))
    # wrong limit refused
    assert not _core.prove_limit(s.g_exp.xreplace({s.c: C}), z, sp.oo, sp.exp(2 * C))
    # a product that does not equal the derivative is refused even if its factors are positive
    assert not _core.prove_sign_by_factors(sp.diff(s.g_exp.xreplace({s.c: C}), z), [sp.exp(z), 1 - sp.exp(-C)], +1)


def test_wrong_dln_formulas_are_refused():
    s5 = d5.derive()
    t, rho, sig, J = s5.t, s5.rho, s5.s, s5.J_closed
    nv = len(s5.v)
    # penalty weight without the 1/J normalisation
    assert not _core.prove_equal(s5.jsam[nv:], [g + rho * sig * zx for g, zx in zip(s5.grad_l[nv:], s5.zxT)], s5.cases)
    s6 = d6.derive()
    f, xn2 = s5.f, s5.xn2
    assert not _core.prove_equal(s6.f_eps, f + rho * t * J + rho**2 * xn2 * f / J**2, s6.cases)
    assert not _core.prove_equal(s6.f_eps, f - rho * t * J, s6.cases)  # drops the exact rho^2 term
    assert not _core.prove_equal(s6.R, [r / rho for r in s6.R_struct], s6.cases)


def test_wrong_softmax_shift_is_refused():
    s = d7.derive()
    lab = s.labels[0]
    xn2 = _core.dot(s.x, s.x)
    assert not _core.prove_equal([a - b for a, b in zip(lab.F_eps, lab.F)],
                                 [s.rho * xn2 * rk / lab.rnorm for rk in lab.r])


def test_numeric_guard_and_crashing_proofs():
    x = sp.Symbol("x", real=True)
    assert _core._numerically_zero([sp.S.Zero, x - x])
    assert not _core._numerically_zero([sp.sin(x) ** 2 + sp.cos(x) ** 2 - 1 + x / 10**6])
    claims = _core.run_steps([
        _core.Step("boom", "raises", lambda: 1 / 0),
        _core.Step("ok", "true", lambda: True),
    ])
    assert [c.holds for c in claims] == [False, True]
    assert "ZeroDivisionError" in claims[0].error


def test_result_with_a_failed_claim_does_not_hold():
    res = _core.timed_result("DX", "x", lambda: [_core.Step("false", "no", lambda: False)])
    assert not res.holds and len(res.failed) == 1
    assert not _core.Result("DY", "empty", (), 0.0).holds  # no claims proves nothing


# --------------------------------------------------------------------------------------------
# Rendered documents
# --------------------------------------------------------------------------------------------


def test_rendered_documents_are_not_stale():
    assert derivations.stale() == [], (
        "derivations/rendered is stale; regenerate with `linsam derive --render derivations/rendered`")


def test_stale_detects_changes(tmp_path):
    written = derivations.render_all(tmp_path)
    assert derivations.stale(tmp_path) == []
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    for p in written:
        assert stat.S_IMODE(os.stat(p).st_mode) & 0o044, f"{p} is not world/group readable"
    target = tmp_path / "d2_lemma31.md"
    target.write_text(target.read_text().replace("increasing", "decreasing", 1))
    (tmp_path / "d5_dln_jsam.md").unlink()
    assert sorted(derivations.stale(tmp_path)) == ["d2_lemma31.md", "d5_dln_jsam.md"]


def test_render_is_deterministic_and_states_dimension():
    for mod in derivations.modules():
        text = mod.render()
        assert text == mod.render()
        assert text.startswith(f"# {mod.NAME}. ")
        assert "Machine-checked claims" in text
        assert ("Dimension" in text) or ("Scope" in text)


# --------------------------------------------------------------------------------------------
# Numeric cross-checks against linsam's closed forms (random float64 points, rtol 1e-10)
# --------------------------------------------------------------------------------------------


def test_d1_matches_logreg(getkey):
    n = 9
    w, X, t = normal(getkey(), (3,)), normal(getkey(), (n, 3)), labels(getkey(), n)
    for rho in (0.0, 0.05, 0.7):
        close(d1.one_sam_direction(w, X, t, rho), logreg.one_sam(w, X, t, rho), f"D1 vs logreg.one_sam rho={rho}")
    rho = 0.3
    z = t * (X @ w)
    C = rho * np.linalg.norm(X, axis=1)
    close(d1.one_sam_weight(z, C), logreg.one_sam_weight(z, C), "D1 weight vs logreg.one_sam_weight")
    close(d1.one_sam_weight(z, C), logreg.per_example_weights(w, X, t, rho, method="one_sam"),
          "D1 weight vs logreg.per_example_weights")


def test_d2_weight_and_derivative_match_logreg(getkey):
    z = normal(getkey(), (50,), 3.0)
    for C in (-1.3, 0.0, 0.4, 2.5):
        Cs = np.full_like(z, C)
        close(d2.weight(z, Cs), logreg.one_sam_weight(z, Cs), f"D2 g vs logreg C={C}")
        grad = jax.vmap(jax.grad(logreg.one_sam_weight), in_axes=(0, None))(jnp.asarray(z), C)
        close(d2.weight_derivative(z, Cs), grad, f"D2 g' vs autodiff of logreg.one_sam_weight C={C}")
        # the proved sign: increasing for C > 0, decreasing for C < 0
        sgn = np.sign(d2.weight_derivative(z, Cs))
        assert np.all(sgn == np.sign(C)), f"sign of g' at C={C}"


def test_d3_matches_logreg_nsam(getkey):
    w, X, t = normal(getkey(), (2,)), normal(getkey(), (2, 2)), labels(getkey(), 2)
    for rho in (0.05, 0.8):
        close(d3.nsam_direction(w, X, t, rho), logreg.nsam(w, X, t, rho), f"D3 vs logreg.nsam rho={rho}")
    n, d, rho = 11, 4, 0.6
    w, X, t = normal(getkey(), (d,)), normal(getkey(), (n, d)), labels(getkey(), n)
    wn = d3.nsam_weights(w, X, t, rho)
    close(wn, logreg.per_example_weights(w, X, t, rho, method="nsam"), "D3 weights vs logreg.per_example_weights")
    w1 = np.asarray(logreg.per_example_weights(w, X, t, rho, method="one_sam"))
    assert np.all(wn <= w1 * (1 + 1e-12)), "n-SAM weight must not exceed the 1-SAM weight"
    # weight > 1 exactly where the example's gradient agrees with the batch gradient
    g = np.asarray(logreg.gd(w, X, t))
    grads = -(t / (1 + np.exp(t * (X @ w))))[:, None] * X
    assert np.array_equal(wn > 1, grads @ g > 0)


def test_d4_linear_variants_match_logreg_and_autodiff(getkey):
    n, rho = 7, 0.4
    w, X, t = normal(getkey(), (3,)), normal(getkey(), (n, 3)), labels(getkey(), n)
    eps = -rho * t[:, None] * X / np.linalg.norm(X, axis=1, keepdims=True)  # D1's eps
    for name in ("one_sam", "lsam", "jsam", "gd"):
        want = logreg.gd(w, X, t) if name == "gd" else getattr(logreg, name)(w, X, t, rho)
        close(d4.binary_rule(name, w, X, t, eps), want, f"D4 {name} vs logreg.{name}")
        if name != "gd":
            auto = autodiff_direction(logreg.MODEL, name, w, X, t, rho)
            close(d4.binary_rule(name, w, X, t, eps), auto, f"D4 {name} vs {name} autodiff")
    model = softmax.make_model(4)
    W, Xs = normal(getkey(), (4, 3)), normal(getkey(), (n, 3))
    ts = jnp.asarray(np.asarray(jax.random.randint(getkey(), (n,), 0, 4)))
    auto = lambda name: autodiff_direction(model, name, W, Xs, ts, rho)  # noqa: E731
    close(auto("lsam"), auto("one_sam"), "softmax autodiff L-SAM vs 1-SAM")
    close(auto("jsam"), auto("gd"), "softmax autodiff J-SAM vs GD")


def _dln_point(getkey, n, h=d5.H, d=d5.DIM, scale=1.0):
    v, W = normal(getkey(), (h,), scale), normal(getkey(), (h, d), scale)
    X, t = normal(getkey(), (n, d)), labels(getkey(), n)
    return dln.DLNParams(v=jnp.asarray(v), W=jnp.asarray(W)), v, W, X, t


def _flat(p):
    return np.concatenate([np.ravel(p.v), np.ravel(p.W)])


def _dln(name, params, X, t, rho=0.0):
    """The DLN's closed-form direction of the named rule (validated entry)."""
    return closed_direction(dln.MODEL, name, params, X, t, rho)


def _remainder(params, X, t, rho):
    """D6's R = 1-SAM - L-SAM - J-SAM + GD from the DLN closed forms."""
    return (_flat(_dln("one_sam", params, X, t, rho)) - _flat(_dln("lsam", params, X, t, rho))
            - _flat(_dln("jsam", params, X, t, rho)) + _flat(_dln("gd", params, X, t)))


def test_d5_jsam_matches_dln(getkey):
    n, rho = 6, 0.35
    params, v, W, X, t = _dln_point(getkey, n)
    jsam = d5.per_example("jsam", v, W, X, t, rho).mean(axis=0)
    close(jsam, _flat(_dln("jsam", params, X, t, rho)), "D5 J-SAM vs DLN closed form")
    close(jsam, _flat(_dln("jreg", params, X, t, rho)), "D5 J-SAM vs DLN closed-form J-reg")
    close(jsam, _flat(autodiff_direction(dln.MODEL, "jsam", params, X, t, rho)), "D5 J-SAM vs JSAM autodiff")
    close(d5.per_example("gd", v, W, X, t, rho).mean(axis=0), _flat(_dln("gd", params, X, t)), "D5 GD vs DLN GD")
    close(d5.per_example("J", v, W, X, t, rho), dln.jacobian_norm(params, X), "D5 J vs dln.jacobian_norm")
    extra = d5.per_example("extra", v, W, X, t, rho).mean(axis=0)
    penalty_grad = jax.grad(lambda p: dln.jsam_penalty(p, X, t, rho))(params)
    close(extra, _flat(penalty_grad), "D5 rho sg(sigma) grad J vs grad of dln.jsam_penalty")
    close(jsam - extra, _flat(_dln("gd", params, X, t)), "D5 J-SAM - extra vs GD")


def test_d5_zero_network_convention():
    params = dln.DLNParams(v=jnp.zeros(2), W=jnp.zeros((2, 3)))
    X, t = jnp.ones((3, 3)), jnp.array([1.0, -1.0, 1.0])
    for name in ("one_sam", "lsam", "jsam", "jreg"):
        out = _flat(_dln(name, params, X, t, 0.5))
        assert np.all(np.isfinite(out)) and np.allclose(out, 0.0), f"DLN {name} at the zero network"


def test_d6_perturbed_logit_and_remainder_match_dln(getkey):
    n, rho = 6, 0.45
    params, v, W, X, t = _dln_point(getkey, n)
    close(d6.per_example("f_eps", v, W, X, t, rho), dln.perturbed_logit(params, X, t, rho), "D6 f(w+eps) vs dln.perturbed_logit")
    close(d6.per_example("f_eps_closed", v, W, X, t, rho), dln.perturbed_logit(params, X, t, rho), "D6 closed form vs dln.perturbed_logit")
    close(d6.per_example("one_sam", v, W, X, t, rho).mean(axis=0), _flat(_dln("one_sam", params, X, t, rho)), "D6 1-SAM vs DLN")
    close(d6.per_example("lsam", v, W, X, t, rho).mean(axis=0), _flat(_dln("lsam", params, X, t, rho)), "D6 L-SAM vs DLN")
    R_lin = _remainder(params, X, t, rho)
    close(d6.per_example("R", v, W, X, t, rho).mean(axis=0), R_lin, "D6 R vs dln 1-SAM - L-SAM - J-SAM + GD", rtol=1e-9)


def test_d6_remainder_is_second_order_in_rho(getkey):
    """Order test: fit log||R|| = a + k log(rho) over two decades of small rho; k = 2 +- 0.1."""
    params, v, W, X, t = _dln_point(getkey, 12, h=5, d=4)
    rhos = np.logspace(-4, -2, 9)

    def remainder(rho):
        return _remainder(params, X, t, rho)

    norms = np.array([np.linalg.norm(remainder(r)) for r in rhos])
    slope, _ = np.polyfit(np.log(rhos), np.log(norms), 1)
    assert abs(slope - 2.0) < 0.1, f"log||R|| vs log rho slope {slope:.4f}, expected 2"
    # and the leading coefficient is the proved one: R / rho^2 -> mean_i s(1-s) J_i grad J_i
    Z = X @ W.T
    m = t * (Z @ v)
    s = 1 / (1 + np.exp(m))
    J = np.sqrt(np.sum(Z**2, 1) + np.sum(X**2, 1) * (v @ v))
    gJ_v = (np.sum(X**2, 1)[:, None] * v[None, :]) / J[:, None]
    gJ_W = (Z[:, :, None] * X[:, None, :]) / J[:, None, None]
    coef = s * (1 - s) * J
    lead = np.concatenate([(coef[:, None] * gJ_v).mean(0), (coef[:, None, None] * gJ_W).mean(0).ravel()])
    # relative error O(rho): at rho = 1e-4 well below 1e-2 in norm
    err = np.linalg.norm(remainder(rhos[0]) / rhos[0] ** 2 - lead) / np.linalg.norm(lead)
    assert err < 1e-2, f"D6 leading coefficient of R: relative error {err:.2e}"


def test_d7_matches_softmax(getkey):
    n, rho = 8, 0.5
    W, X = normal(getkey(), (3, 2)), normal(getkey(), (n, 2))
    t = jnp.asarray(np.asarray(jax.random.randint(getkey(), (n,), 0, 3)))
    model = softmax.make_model(3)
    close(d7.one_sam_direction(W, X, np.asarray(t), rho), closed_direction(model, "one_sam", W, X, t, rho),
          "D7 vs Softmax closed form")
    close(d7.one_sam_direction(W, X, np.asarray(t), rho), autodiff_direction(model, "one_sam", W, X, t, rho),
          "D7 vs OneSAM autodiff")


def test_d7_surviving_up_weighting(getkey):
    """Any K, d: margin drops are the proved delta_k, the labelled weight is g(m~; C) > 1,
    and C obeys the Jensen / uniform-shape bounds."""
    K, d, n, rho = 5, 4, 20, 0.7
    W, X = normal(getkey(), (K, d)), normal(getkey(), (n, d))
    t = np.asarray(jax.random.randint(getkey(), (n,), 0, K))
    logits = X @ W.T
    new = np.asarray(softmax.perturbed_logits(W, X, jnp.asarray(t), rho))
    P = np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=1))
    Pn = np.asarray(jax.nn.softmax(jnp.asarray(new), axis=1))
    for i in range(n):
        c, xn = int(t[i]), np.linalg.norm(X[i])
        delta = d7.margin_drops(P[i], c, rho * xn)
        drop = (logits[i, c] - logits[i]) - (new[i, c] - new[i])
        close(drop, delta, f"D7 margin drops, example {i}")
        weight, C = d7.labelled_weight(P[i], c, delta)
        close((1 - Pn[i, c]) / (1 - P[i, c]), weight, f"D7 labelled-class weight, example {i}")
        q = np.delete(P[i], c) / (1 - P[i, c])
        assert weight > 1 and C > 0
        assert C >= rho * xn * np.sqrt(1 + q @ q) * (1 - 1e-12) >= rho * xn * np.sqrt(K / (K - 1)) * (1 - 1e-12)
        assert C <= np.sqrt(2.0) * rho * xn * (1 + 1e-12)
    # K = 2: the binary shift sqrt(2) rho ||x||
    p = np.array([0.3, 0.7])
    close(d7.margin_drops(p, 0, 1.0)[1], np.sqrt(2.0), "K=2 margin drop")


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def test_cli_lists_and_prints(capsys):
    assert cli.main(["derive"]) == 0
    out = capsys.readouterr().out
    for name in derivations.names():
        assert name in out
    assert cli.main(["derive", "d2"]) == 0
    assert capsys.readouterr().out == d2.render()
    assert cli.main(["derive", "nope"]) == 2
    assert "unknown derivation" in capsys.readouterr().err


def test_cli_check_subset_and_render(tmp_path, capsys):
    assert cli.main(["derive", "--check", "D1", "D4"]) == 0
    out = capsys.readouterr().out
    assert "D1  PASS" in out and "D4  PASS" in out and "all results hold" in out
    assert cli.main(["derive", "--render", str(tmp_path / "docs")]) == 0
    assert derivations.stale(tmp_path / "docs") == []


def test_cli_check_fails_when_a_claim_fails(monkeypatch, capsys):
    monkeypatch.setattr(d4, "steps", lambda: [_core.Step("a false claim", "none", lambda: False)])
    assert cli.main(["derive", "--check", "D4"]) == 1
    out = capsys.readouterr().out
    assert "D4  FAIL" in out and "not proved: a false claim" in out
