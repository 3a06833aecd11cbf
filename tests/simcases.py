"""Small simulator cases shared by test_simulate.py and test_theory.py.

Each configuration compiles once per test session (results are cached), and every test that
needs a sweep reuses one of these static signatures, so CI pays for few compilations.
"""

from functools import lru_cache

from linsam import simulate as sim
from linsam.data import MixtureSpec, NoiseSpec

# records at steps 0, 1, 2, 4, 6 (dense to 2, then every 2); two seed chunks of one seed
TINY = sim.SimConfig(
    name="tiny",
    n=12,
    steps=6,
    record_every=2,
    record_dense=2,
    lr=0.5,
    rhos=(0.0, 0.7, 1.5),
    num_seeds=2,
    seed_chunk=1,
    methods=("gd", "one_sam"),
    init_scale=1.0,
    hidden=3,
    dtype="float64",
    data=MixtureSpec("isotropic", 5, 1.0, sigma=0.8),
    noise=NoiseSpec("symmetric", 0.25),
)

TINY_DLN = TINY.replace(model="dln", methods=("gd", "one_sam", "jsam", "jreg_fixed"), lam_last=0.1, lam_act=0.2)

# the TOML form of TINY (same static signature: the CLI test hits the compilation cache)
TINY_TOML = """
name = "tiny_cli"
methods = ["gd", "one_sam"]
rhos = [0.0, 0.7, 1.5]
num_seeds = 2
seed_chunk = 1
n = 12
steps = 6
record_every = 2
record_dense = 2
lr = 0.5
init_scale = 1.0
hidden = 3
dtype = "float64"
[data]
kind = "isotropic"
d = 5
mean_norm = 1.0
sigma = 0.8
[noise]
kind = "symmetric"
rate = 0.25
[meta]
regime = "tiny"
role = "report"
table = "linear"
title = "tiny regime"
rho = 0.7
"""


@lru_cache(maxsize=None)
def logreg_result():
    return sim.simulate(TINY, keep_params=True, progress=False)


@lru_cache(maxsize=None)
def dln_result():
    return sim.simulate(TINY_DLN, keep_params=True, progress=False)
