"""Tests of linsam.data: noise models, mixtures, population accuracy, bad input.

Tolerance tiers: exact (counts, deterministic identities); statistical (frequencies and
sampled accuracies against their expectation, bounded by 5 standard errors so the
false-alarm rate is below 1e-6 per check).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from linsam import data
from linsam.data import NoiseSpec

# Shared shapes keep the number of compilations (the CI cost) small: statistical checks use
# one mixture of dimension D on N_STAT points, small checks N_SMALL points.
D, N_STAT, N_SMALL = 8, 20000, 40


# ----------------------------------------------------------------------------- symmetric


@settings(max_examples=20, deadline=None)
@given(n=st.sampled_from([2, 97]), rate=st.floats(0.0, 0.99), K=st.sampled_from([2, 3, 10]), seed=st.integers(0, 2**31 - 1))
def test_symmetric_exact_count_and_targets(n, rate, K, seed):
    key = jax.random.PRNGKey(seed)
    labels = jax.random.randint(jax.random.fold_in(key, 1), (n,), 0, K)
    out = data.symmetric_noise(key, labels, rate, K)
    m = math.floor(rate * n + 1e-9)
    assert int(out.mask.sum()) == m
    assert out.rate == m / n and isinstance(out.rate, float)
    np.testing.assert_array_equal(out.clean, labels)
    # flipped examples moved to another class, unflipped kept theirs
    np.testing.assert_array_equal(np.asarray(out.noisy != out.clean), np.asarray(out.mask))
    assert out.noisy.min() >= 0 and out.noisy.max() < K


def test_symmetric_flip_target_is_uniform_over_other_classes(getkey):
    # statistical: each of the K-1 shifts has frequency 1/(K-1); 5 SE bound
    K, n = 5, N_STAT
    labels = jax.random.randint(getkey(), (n,), 0, K)
    out = data.symmetric_noise(getkey(), labels, 0.5, K)
    shift = np.asarray((out.noisy - out.clean) % K)[np.asarray(out.mask)]
    freq = np.bincount(shift, minlength=K)[1:] / shift.size
    se = math.sqrt((1 / (K - 1)) * (1 - 1 / (K - 1)) / shift.size)
    assert np.all(np.abs(freq - 1 / (K - 1)) < 5 * se), freq


def test_symmetric_bernoulli_rate(getkey):
    n, p = N_STAT, 0.3
    labels = jnp.zeros((n,), jnp.int32)
    out = data.symmetric_noise(getkey(), labels, p, 2, exact=False)
    assert abs(out.rate - p) < 5 * math.sqrt(p * (1 - p) / n)
    b = data.binary_symmetric_noise(getkey(), jnp.ones(n), p, exact=False)
    assert abs(b.rate - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_same_key_same_labels(getkey):
    key = getkey()
    mix = data.isotropic_mixture(D, 1.0)
    ds1 = data.sample_binary(key, mix, N_SMALL, NoiseSpec("symmetric", 0.3))
    ds2 = data.sample_binary(key, mix, N_SMALL, NoiseSpec("symmetric", 0.3))
    for x, y in zip(ds1[:4], ds2[:4]):
        np.testing.assert_array_equal(x, y)
    ds3 = data.sample_binary(getkey(), mix, N_SMALL, NoiseSpec("symmetric", 0.3))
    assert not np.array_equal(ds1.X, ds3.X)


def test_binary_symmetric_flips_sign(getkey):
    t = jnp.where(jax.random.bernoulli(getkey(), 0.5, (50,)), 1.0, -1.0)
    out = data.binary_symmetric_noise(getkey(), t, 0.2)
    np.testing.assert_array_equal(out.noisy, jnp.where(out.mask, -t, t))
    assert int(out.mask.sum()) == 10 and out.rate == 0.2


# ----------------------------------------------------------------------------- transition


def test_cifar10_asymmetric_transition():
    T = data.cifar10_asymmetric_transition(0.4)
    c = {name: i for i, name in enumerate(data.CIFAR10_CLASSES)}
    np.testing.assert_allclose(T.sum(axis=1), 1.0)
    for src, dst in [("truck", "automobile"), ("bird", "airplane"), ("cat", "dog"), ("dog", "cat"), ("deer", "horse")]:
        assert T[c[src], c[dst]] == 0.4 and T[c[src], c[src]] == 0.6
    for keep in ["airplane", "automobile", "frog", "horse", "ship"]:
        assert T[c[keep], c[keep]] == 1.0
    assert data.CIFAR10_CLASSES[:3] == ("airplane", "automobile", "bird")


def test_transition_noise_matches_T(getkey):
    # statistical: empirical P(noisy j | clean i) within 5 SE of T[i, j]
    K, n = 4, N_STAT
    rng = np.random.default_rng(0)
    T = rng.dirichlet(np.ones(K), size=K)
    labels = jax.random.randint(getkey(), (n,), 0, K)
    out = data.transition_noise(getkey(), labels, T)
    clean, noisy = np.asarray(out.clean), np.asarray(out.noisy)
    for i in range(K):
        sel = noisy[clean == i]
        freq = np.bincount(sel, minlength=K) / sel.size
        se = np.sqrt(T[i] * (1 - T[i]) / sel.size) + 1e-12
        assert np.all(np.abs(freq - T[i]) < 5 * se + 1e-9), (i, freq, T[i])
    np.testing.assert_array_equal(np.asarray(out.mask), clean != noisy)


def test_transition_identity_and_pair_flip(getkey):
    labels = jnp.arange(30) % 3
    out = data.transition_noise(getkey(), labels, np.eye(3))
    assert out.rate == 0.0 and not bool(out.mask.any())
    out = data.transition_noise(getkey(), labels, data.pair_flip_transition(0.9999999, 3) * 0 + np.roll(np.eye(3), 1, 1))
    np.testing.assert_array_equal(out.noisy, (labels + 1) % 3)


# ----------------------------------------------------------------------------- structured


@pytest.fixture(scope="module")
def big_sample():
    """N_STAT points of an isotropic mixture (||mu|| = 1.2, sigma = 2) and their clean margins."""
    mix = data.isotropic_mixture(D, 1.2, sigma=2.0)
    X, t = mix.sample(jax.random.PRNGKey(123), N_STAT)
    return mix, X, t, mix.clean_margin(X, t)


def test_boundary_noise_concentrates_near_boundary(big_sample, getkey):
    mix, X, t, margin = big_sample
    out = data.boundary_noise(getkey(), t, margin, 0.2, temperature=0.3)
    assert int(out.mask.sum()) == N_STAT // 5
    flipped, kept = np.abs(margin[out.mask]), np.abs(margin[~out.mask])
    assert flipped.mean() < 0.5 * kept.mean()
    # a very large temperature is uniform: flipped and kept |margin| agree statistically
    out = data.boundary_noise(getkey(), t, margin, 0.2, temperature=1e6)
    flipped, kept = np.abs(margin[out.mask]), np.abs(margin[~out.mask])
    se = math.sqrt(flipped.var() / flipped.size + kept.var() / kept.size)
    assert abs(flipped.mean() - kept.mean()) < 5 * se


def test_clean_margin_is_bayes_margin_for_isotropic(big_sample):
    # statistical: m_i ~ N(||mu||/sigma, 1) per example
    mix, X, t, m = big_sample
    m = np.asarray(m)
    assert abs(m.mean() - 0.6) < 5 / math.sqrt(m.size)
    assert abs(m.std() - 1.0) < 0.05


def test_subgroup_noise_all_in_group(big_sample, getkey):
    mix, X, t, _ = big_sample
    group = X[:, 3] > 0
    m = data.num_flips(0.3, N_STAT)
    out = data.subgroup_noise(getkey(), t, group, 0.3)
    mask, g = np.asarray(out.mask), np.asarray(group)
    assert mask.sum() == m and np.all(g[mask])
    uniform = data.subgroup_noise(getkey(), t, group, 0.3, concentration=0.0)
    frac_in = np.asarray(uniform.mask)[g].sum() / m
    assert abs(frac_in - g.mean()) < 5 * math.sqrt(0.25 / m)


def test_subgroup_too_small_is_refused(getkey):
    t = jnp.ones(10)
    with pytest.raises(ValueError, match="group holds 2 examples"):
        data.subgroup_noise(getkey(), t, jnp.arange(10) < 2, 0.5)


def test_class_conditional_binary(big_sample, getkey):
    _, _, t, _ = big_sample
    out = data.binary_class_conditional_noise(getkey(), t, 0.4, 0.1)
    pos, neg = np.asarray(t > 0), np.asarray(t < 0)
    m = np.asarray(out.mask)
    assert abs(m[pos].mean() - 0.4) < 5 * math.sqrt(0.24 / pos.sum())
    assert abs(m[neg].mean() - 0.1) < 5 * math.sqrt(0.09 / neg.sum())


def test_structured_noise_under_vmap(getkey):
    # the simulator draws one data set per seed inside jit(vmap(.)): every kind must trace
    mix = data.isotropic_mixture(D, 1.0)
    X, t = mix.sample(getkey(), N_SMALL)
    kinds = ("boundary", "subgroup", "class_conditional")
    specs = [NoiseSpec(kind, 0.25, rate_neg=0.1, group_coord=2) for kind in kinds]
    corrupt = jax.jit(jax.vmap(lambda k: [data.corrupt_binary(k, X, t, spec, mix) for spec in specs]))
    for kind, lab in zip(kinds, corrupt(jax.random.split(getkey(), 3))):
        assert lab.noisy.shape == (3, N_SMALL) and jnp.shape(lab.rate) == (3,), kind
        np.testing.assert_array_equal(np.asarray(lab.noisy != lab.clean), np.asarray(lab.mask))
        np.testing.assert_allclose(lab.rate, np.asarray(lab.mask).mean(axis=1), rtol=1e-6)
        if kind != "class_conditional":
            np.testing.assert_array_equal(np.asarray(lab.mask).sum(axis=1), 10)
        if kind == "subgroup":
            assert np.all(np.broadcast_to(np.asarray(X[:, 2] > 0), (3, N_SMALL))[np.asarray(lab.mask)])


# ----------------------------------------------------------------------------- mixtures


def test_mixture_moments(getkey):
    lam = data.power_law_spectrum(D, 1.0)
    np.testing.assert_allclose(lam.sum(), D)
    mix = data.anisotropic_mixture(lam, 2.0, mean_coords=[2, 5])
    X, t = mix.sample(getkey(), N_STAT)
    Z = np.asarray(X - t[:, None] * mix.mu)
    np.testing.assert_allclose(Z.var(axis=0), lam, rtol=0.05)
    np.testing.assert_allclose(np.asarray(mix.mu)[[2, 5]], 2.0 / math.sqrt(2))
    assert abs(float(t.mean())) < 5 / math.sqrt(N_STAT)


def test_signal_noise_mixture_shape():
    mix = data.signal_noise_mixture(100, num_signal=4, signal=2.0, signal_std=0.0, noise_std=0.5)
    np.testing.assert_allclose(np.linalg.norm(mix.mu), 2.0)
    assert float(mix.scale[0]) == 0.0 and float(mix.scale[-1]) == 0.5
    assert float(mix.bayes_accuracy()) == 1.0


@pytest.mark.parametrize(
    "mix",
    [
        data.isotropic_mixture(30, 0.8),
        data.anisotropic_mixture(data.power_law_spectrum(30, 1.5), 0.5, mean_coords=10),
        data.signal_noise_mixture(30, num_signal=2, signal=1.0, signal_std=0.7, noise_std=0.3),
    ],
    ids=["isotropic", "anisotropic", "signal_noise"],
)
def test_population_accuracy_matches_large_sample(mix, getkey):
    # statistical: sampled accuracy on n = 200000 within 5 binomial SE of the closed form
    W = jax.random.normal(getkey(), (4, mix.dim)) + 3 * mix.mu  # 4 classifiers, some signal
    n = 200_000
    pop = np.asarray(data.population_accuracy(mix, W))
    samp = np.asarray(data.sampled_accuracy(getkey(), mix, W, n))
    se = np.sqrt(pop * (1 - pop) / n)
    assert np.all(np.abs(pop - samp) < 5 * se + 1e-12), (pop, samp)


def test_population_accuracy_special_cases():
    mix = data.isotropic_mixture(5, 1.0, sigma=2.0)
    # Bayes direction: Phi(||mu||/sigma); zero weights: chance; leading axes kept
    np.testing.assert_allclose(data.population_accuracy(mix, mix.mu), norm.cdf(0.5), rtol=1e-12)
    np.testing.assert_allclose(mix.bayes_accuracy(), norm.cdf(0.5), rtol=1e-12)
    assert float(data.population_accuracy(mix, jnp.zeros(5))) == 0.5
    assert data.population_accuracy(mix, jnp.ones((3, 2, 5))).shape == (3, 2)
    noiseless = data.signal_noise_mixture(5, signal=1.0, signal_std=0.0)
    assert float(data.population_accuracy(noiseless, jnp.eye(5)[0])) == 1.0
    assert float(data.population_accuracy(noiseless, -jnp.eye(5)[0])) == 0.0


def test_multiclass_mixture(getkey):
    mix = data.multiclass_mixture(D, 4, 3.0)
    ds = data.sample_multiclass(getkey(), mix, 400, 0.25)
    assert ds.X.shape == (400, D) and int(ds.mask.sum()) == 100 and ds.rate == 0.25
    np.testing.assert_array_equal(np.asarray(ds.noisy != ds.clean), np.asarray(ds.mask))
    # the mean classifier W = means is accurate on the clean labels
    pred = np.argmax(np.asarray(ds.X) @ np.asarray(mix.means).T, axis=1)
    assert np.mean(pred == np.asarray(ds.clean)) > 0.9
    ds_t = data.sample_multiclass(getkey(), mix, 400, T=data.pair_flip_transition(0.2, 4))
    np.testing.assert_array_equal(np.asarray(ds_t.noisy != ds_t.clean), np.asarray(ds_t.mask))
    flips = np.asarray(ds_t.mask)
    np.testing.assert_array_equal(np.asarray(ds_t.noisy)[flips], (np.asarray(ds_t.clean)[flips] + 1) % 4)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_noise_rate(rate, getkey):
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        data.symmetric_noise(getkey(), jnp.arange(4) % 2, rate, 2)
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        data.binary_symmetric_noise(getkey(), jnp.ones(4), rate)
    with pytest.raises(ValueError, match=r"noise.rate must be in \[0, 1\)"):
        data.sample_binary(getkey(), data.isotropic_mixture(3, 1.0), 10, NoiseSpec("symmetric", rate))


@pytest.mark.parametrize(
    "T, msg",
    [
        (np.array([[0.5, 0.4], [0.0, 1.0]]), "row 0 sums to 0.9"),
        (np.array([[1.2, -0.2], [0.0, 1.0]]), "entries >= 0"),
        (np.ones((2, 3)) / 3, "square"),
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), "NaN"),
    ],
)
def test_bad_transition(T, msg, getkey):
    with pytest.raises(ValueError, match=msg):
        data.transition_noise(getkey(), jnp.arange(4) % 2, T)


def test_bad_labels_and_sizes(getkey):
    with pytest.raises(ValueError, match=r"labels \(class ids\) must be in \[0, 3\)"):
        data.symmetric_noise(getkey(), jnp.array([0, 1, 3]), 0.1, 3)
    with pytest.raises(ValueError, match="must be -1 or \\+1"):
        data.binary_symmetric_noise(getkey(), jnp.array([1.0, 0.0]), 0.1)
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        data.sample_binary(getkey(), data.isotropic_mixture(3, 1.0), 1)
    with pytest.raises(ValueError, match="noise.kind must be one of"):
        data.sample_binary(getkey(), data.isotropic_mixture(3, 1.0), 10, NoiseSpec("uniform", 0.1))
    with pytest.raises(ValueError, match="spectrum"):
        data.anisotropic_mixture([1.0, -1.0], 1.0)
    with pytest.raises(ValueError, match="mean_norm"):
        data.isotropic_mixture(3, 0.0)
