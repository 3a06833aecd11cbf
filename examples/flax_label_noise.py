"""1-SAM vs SGD on a Flax MLP under label noise, with plain optax (``python examples/flax_label_noise.py``).

A two-class Gaussian mixture, 30% of the training labels flipped; a Flax ``nn.Module`` wrapped
in ``linsam.models.Generic``; the step is ``optax.sgd`` fed with ``linsam.grad(method, model)``,
the rule's direction in place of the gradient (so any optax wrapper would see it). Prints the
clean test accuracy of each method. ``--tiny`` runs in seconds (the test suite runs it).
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import linsam
from linsam.models import Generic
from linsam.rules import GD, OneSAM, binary_logistic_loss


class MLP(nn.Module):
    width: int = 64

    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.relu(nn.Dense(self.width)(x)))[..., 0]   # one logit: binary


def make_data(key, n, d, noise):
    """x = t mu + N(0, I), ||mu|| = 2; training labels flipped with probability ``noise``."""
    kx, kt, kf, kxt, ktt = jax.random.split(key, 5)
    mu = jnp.zeros(d).at[0].set(2.0)
    t = jnp.where(jax.random.bernoulli(kt, 0.5, (n,)), 1.0, -1.0)
    X = t[:, None] * mu + jax.random.normal(kx, (n, d))
    t_noisy = jnp.where(jax.random.bernoulli(kf, noise, (n,)), -t, t)
    t_test = jnp.where(jax.random.bernoulli(ktt, 0.5, (2000,)), 1.0, -1.0)
    X_test = t_test[:, None] * mu + jax.random.normal(kxt, (2000, d))
    return X, t_noisy, X_test, t_test


def train(method, *, n=512, d=20, width=64, noise=0.3, steps=800, batch=64, lr=0.02, seed=0):
    """Train the MLP with ``method`` (a linsam.rules value); returns the clean test accuracy."""
    key_data, key_init, key_batches = jax.random.split(jax.random.key(seed), 3)
    X, t, X_test, t_test = make_data(key_data, n, d, noise)
    net = MLP(width)
    params = net.init(key_init, X[0])
    model = Generic(apply=net.apply, loss_from_logits=binary_logistic_loss)
    sam_grad = linsam.grad(method, model)
    opt = optax.sgd(lr, momentum=0.9)

    @jax.jit
    def step(carry, idx):
        params, state = carry
        updates, state = opt.update(sam_grad(params, (X[idx], t[idx])), state, params)
        return (optax.apply_updates(params, updates), state), None

    idx = jax.random.randint(key_batches, (steps, batch), 0, n)
    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), idx)
    logits = jax.vmap(net.apply, in_axes=(None, 0))(params, X_test)
    return float(jnp.mean(jnp.sign(logits) == t_test))


def main(argv=None, *, seed=0):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes (seconds)")
    args = parser.parse_args(argv)
    size = dict(n=64, d=5, width=8, steps=20, batch=16) if args.tiny else {}
    accs = {name: train(m, seed=seed, **size) for name, m in (("SGD", GD()), ("1-SAM rho=0.2", OneSAM(0.2)))}
    for name, acc in accs.items():
        print(f"{name:>14}: clean test accuracy {100 * acc:.1f}%")
    return accs


if __name__ == "__main__":
    main()
