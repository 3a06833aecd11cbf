"""Sweep a Flax MLP over rho and seeds with ``linsam.simulate`` (``python examples/flax_sweep.py``).

The sweep engine runs any model given as a ``linsam.models.Generic``: here a small Flax
``nn.Module``'s ``apply`` (one example -> one logit) and ``init``. The config describes the data
(an isotropic Gaussian mixture, 30% of the training labels flipped), the methods, the rho grid,
the seeds and the steps, and says ``model = "generic"``; the model value is passed next to it,
``simulate(config, model=...)``. GD and 1-SAM at every rho and seed are one compiled sweep
(generic ``lax.scan`` backend); ``test_acc`` is measured on a clean held-out sample, ``val_acc``
on a validation sample with the training label noise. Prints, per method and rho, the final
clean test accuracy (mean and spread over seeds) and the test accuracy at the step that
``val_acc`` selects. ``--tiny`` runs in seconds (the test suite runs it).
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from linsam import simulate as sim
from linsam.data import MixtureSpec, NoiseSpec
from linsam.models import Generic
from linsam.rules import binary_logistic_loss


class MLP(nn.Module):
    width: int = 32

    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.relu(nn.Dense(self.width)(x)))[..., 0]  # one logit: binary, labels -1/+1


def flax_model(width: int) -> Generic:
    """The Flax MLP as a linsam model: ``apply`` for one example, ``init(key, d, *, scale, dtype)``
    (Flax's default initialisation times ``scale``, in the sweep's dtype). Build it once: the
    engine compiles once per model value."""
    net = MLP(width)

    def init(key, d, *, scale, dtype):
        params = net.init(key, jnp.zeros((d,), dtype))
        return jax.tree_util.tree_map(lambda a: (scale * a).astype(dtype), params)

    return Generic(apply=net.apply, loss_from_logits=binary_logistic_loss, init=init)


def sweep(*, tiny=False):
    """The sweep's config and result (a ``SweepResult`` with dims rule, rho, seed, step)."""
    size = dict(num_seeds=2, n=40, steps=20, record_every=5, d=5, width=8, test_size=500) if tiny else \
        dict(num_seeds=8, n=400, steps=400, record_every=20, d=20, width=64, test_size=5000)
    d, width = size.pop("d"), size.pop("width")
    cfg = sim.SimConfig(name="flax_mlp", model="generic", methods=("gd", "one_sam"), rhos=(0.05, 0.2, 0.5),
                        lr=0.5, init_scale=1.0, data=MixtureSpec("isotropic", d, 1.5, sigma=1.0),
                        noise=NoiseSpec("symmetric", 0.3), **size)
    return cfg, sim.simulate(cfg, model=flax_model(width))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes (seconds)")
    args = parser.parse_args(argv)
    cfg, res = sweep(tiny=args.tiny)
    ds = res.ds  # xarray: test_acc (rule, rho, seed, step)
    test, val = ds["test_acc"].values, ds["val_acc"].values
    best = val.argmax(axis=-1)  # the step val_acc selects, per run (noisy labels only)
    at_best = np.take_along_axis(test, best[..., None], axis=-1)[..., 0]
    print(f"Flax MLP, {cfg.num_seeds} seeds, n={cfg.n}, {cfg.noise.rate:.0%} label noise, {cfg.steps} steps "
          f"({res.elapsed_s:.1f} s)")
    out = {}
    for i, rule in enumerate(cfg.methods):
        for j, rho in enumerate(cfg.rhos):
            if rule == "gd" and j:  # GD does not use rho: one row
                continue
            label = "gd" if rule == "gd" else f"one_sam rho={rho:g}"
            final = test[i, j, :, -1]
            out[label] = float(final.mean())
            print(f"{label:>16}: final test accuracy {100 * final.mean():.1f}% (sd {100 * final.std():.1f} over "
                  f"seeds), at the val-selected step {100 * at_best[i, j].mean():.1f}%")
    return out


if __name__ == "__main__":
    main()
