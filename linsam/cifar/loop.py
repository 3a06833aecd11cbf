r"""The loop and checkpoints: :class:`Trainer` (epochs in compiled blocks, evaluation), the
measured time plan and resume of :func:`run_method`, and the multi-method / multi-seed calls
:func:`run` and :func:`run_seeds`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

import linsam
import linsam.optax
from linsam import rules
from linsam._src.engine import shard
from linsam.cifar import data as cdata
from linsam.cifar import parallel
from linsam.cifar.config import SCHEMA, CifarConfig, _err, config_dict, config_hash, validate_config
from linsam.cifar.plan import PreparedData, block_length, make_schedule, prepare_data, steps_per_epoch
from linsam.cifar.programs import (COMPILE_EVENTS, TrainState, _block_flops, _compiled, make_optimizer,
                                   method_chunks, method_hyper, method_value, model_arch_name, program_spec,
                                   prop41_coefficients, rule_model, rule_spec)
from linsam.cifar.resnet import count_params, head_kernel, init_variables
from linsam.cifar.results import (_atomic_write_bytes, _read_method_results, _seed_dir, _versions, aggregate,
                                  aggregate_seeds,
                                  device_description, draw_figure, draw_seed_figure, summarize, write_json_atomic)
from linsam.cifar.small import init_small_variables


class OutOfTime(Exception):
    """The next block of training would end past the method's deadline."""


class Terminated(BaseException):
    """SIGTERM arrived (``linsam cifar`` turns it into this exception: e.g. the outer time
    guard of bench/gpu_cifar.sh). A BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` swallows it."""


class Trainer:
    """Training and evaluation of one config on prepared data.

    Randomness, all explicit and seeded: initial weights from numpy PCG64 seeded by ``seed``
    (:func:`~linsam.cifar.resnet.init_variables`); epoch ``e`` (0-based) shuffles and draws
    its crop offsets and flips from ``default_rng([seed, 2, e])`` on the host, and the
    device applies them. (Host-side draws keep the random-number generator out of the
    compiled training program: XLA's CPU compile of threefry dominated the test time.)
    Nothing depends on wall-clock or on how the run was split into calls, so a resumed run
    repeats an uninterrupted one bit for bit.
    """

    def __init__(self, cfg: CifarConfig, data: PreparedData, devices: int | None = None):
        self.cfg = cfg
        self.data = data
        #: The data-parallel mesh over ``devices`` (default: every device, every process's;
        #: None on one device): :mod:`linsam.cifar.parallel`.
        self.mesh = parallel.data_mesh(devices)
        self.num_devices = parallel.num_shards(self.mesh)
        parallel.check_split(cfg, self.num_devices)
        self.spec = program_spec(cfg, self.mesh)
        self.net = self.spec.net()
        self.model = rule_model(rule_spec(self.spec))
        self.n_train = int(data.x_train.shape[0])
        self.steps = steps_per_epoch(cfg, self.n_train)
        if self.steps < 1:
            raise _err("batch_size", f"({cfg.batch_size}) exceeds the number of training images ({self.n_train})")
        self.total_steps = self.steps * cfg.epochs
        self.schedule = make_schedule(cfg, self.total_steps)
        if self.mesh is None:
            self.device_data = (jnp.asarray(data.x_train), jnp.asarray(data.y_noisy),
                                jnp.asarray(data.mean, jnp.float32), jnp.asarray(data.std, jnp.float32))
        else:  # the training set replicated on every device; each gathers its own examples
            self.device_data = parallel.put((data.x_train, data.y_noisy, np.asarray(data.mean, np.float32),
                                             np.asarray(data.std, np.float32)), self.mesh)
        self.lam_last = cfg.lam_last
        self.lam_act = cfg.lam_act

    @property
    def method(self) -> rules.Method:
        """The method value (:func:`method_value`) with the current regulariser coefficients."""
        return method_value(self.cfg, self.lam_last, self.lam_act)

    # -- state
    def init_state(self) -> TrainState:
        variables = (init_variables(self.net, self.cfg.seed) if self.cfg.arch == "resnet"
                     else init_small_variables(self.net, self.cfg.seed, tuple(self.data.x_train.shape[1:])))
        params = variables["params"]
        bstats = variables.get("batch_stats", {})
        opt_state = make_optimizer(linsam.optax.from_method(self.method, self.model), 0.0, 0.0, 0.0).init(params)
        return self.place(TrainState(params, bstats, opt_state))

    def place(self, state: TrainState) -> TrainState:
        """``state`` replicated on the mesh (unchanged on one device)."""
        if self.mesh is None:
            return state
        return parallel.put(parallel.tree_to_host(state), self.mesh)

    def place_block(self, block):
        """A block of the plan on the devices: indices, crops and flips split along the batch
        axis (axis 1), the learning rates replicated."""
        if self.mesh is None:
            return tuple(jnp.asarray(a) for a in block)
        idx, offsets, flips, lr = block
        return parallel.put((idx, offsets, flips), self.mesh, axis=1) + (parallel.put(lr, self.mesh),)

    def calibrate(self, state: TrainState) -> None:
        """Fill in the Prop. 4.1 defaults of ``jreg_fixed`` (only where the config leaves them None)."""
        if self.cfg.method != rules.JRegFixed.name or (self.lam_last is not None and self.lam_act is not None):
            return
        n = min(self.cfg.batch_size, self.n_train)
        x, y, mean, std = self.device_data
        X = cdata.preprocess(x[:n], mean, std)
        lam_last, lam_act = prop41_coefficients(self.spec, state.params, X, y[:n], self.cfg.rho)
        if self.lam_last is None:
            self.lam_last = lam_last
        if self.lam_act is None:
            self.lam_act = lam_act

    def hyper(self):
        """(method value, weight_decay, momentum): the method's leaves and the rest float32 scalars."""
        hyper = self.method, jnp.float32(self.cfg.weight_decay), jnp.float32(self.cfg.momentum)
        return hyper if self.mesh is None else parallel.put(hyper, self.mesh)

    # -- training
    def epoch_plan(self, epoch: int):
        """(indices (steps, batch) int32, crop offsets (steps, batch, 2) int32, flips
        (steps, batch) bool, learning rates (steps,) float32) for 0-based ``epoch``; the
        random parts from ``default_rng([seed, 2, epoch])``, the rates from the optax schedule."""
        rng = np.random.default_rng([self.cfg.seed, 2, int(epoch)])
        shape = (self.steps, self.cfg.batch_size)
        idx = rng.permutation(self.n_train)[: shape[0] * shape[1]].reshape(shape).astype(np.int32)
        offsets, flips = cdata.augmentation_params(rng, shape)
        lr = self.learning_rates(epoch * self.steps + np.arange(self.steps))
        return idx, offsets, flips, lr

    def learning_rates(self, steps) -> np.ndarray:
        return np.asarray(jax.vmap(self.schedule)(jnp.asarray(steps, jnp.int32)), np.float32)

    def blocks(self):
        """Block lengths covering one epoch, all equal, so one program is compiled per method:
        the largest divisor of the steps per epoch that is at most ``log_every`` (78 steps,
        ``log_every`` 20: 6 blocks of 13)."""
        b = block_length(self.steps, self.cfg.log_every)
        return [b] * (self.steps // b)

    def _executable(self, state, plan):
        return _compiled("train", self.spec, state, plan, self.device_data, self.hyper())

    def compile(self, state: TrainState) -> float:
        """Ahead-of-time compile the training block and the evaluation, and time one
        evaluation batch; returns seconds (the compile part is 0 when an identical program
        was compiled before in this process). ``compile_info`` says what was compiled."""
        t0 = time.perf_counter()
        n0 = len(COMPILE_EVENTS)
        plan = self.epoch_plan(0)
        for length in sorted(set(self.blocks())):
            exe = self._executable(state, self.place_block(tuple(a[:length] for a in plan)))
        self.block_flops = _block_flops(exe, method_chunks(self.method, self.cfg.batch_size))
        t1 = time.perf_counter()
        self._logits(state, self.data.x_test[: self.cfg.eval_batch_size])  # compiles (or reuses) and runs once
        t2 = time.perf_counter()
        self._logits(state, self.data.x_test[: self.cfg.eval_batch_size])  # timed: one evaluation batch
        self.eval_batch_s = time.perf_counter() - t2
        new = COMPILE_EVENTS[n0:]
        self.compile_info = {
            "train_programs": sum(1 for p, _, _ in new if p == "train"),
            "eval_programs": sum(1 for p, _, _ in new if p == "eval"),
            "block_steps": self.blocks()[0], "blocks_per_epoch": len(self.blocks()),
            "train_compile_s": t1 - t0, "eval_compile_s": t2 - t1,
        }
        return t2 - t0

    def eval_seconds_estimate(self) -> float:
        """Seconds of one :meth:`evaluate`, from the timed batch of :meth:`compile`."""
        n_eval = self.n_train if self.cfg.eval_train_size is None else min(self.cfg.eval_train_size, self.n_train)
        bs = self.cfg.eval_batch_size
        batches = -(-self.data.x_test.shape[0] // bs) + -(-n_eval // bs)
        return batches * getattr(self, "eval_batch_s", 0.0)

    def train_epoch(self, state: TrainState, epoch: int, progress: Callable | None = None,
                    may_continue: Callable | None = None) -> TrainState:
        """One epoch in :meth:`blocks`. ``may_continue(blocks_left, block_s)`` is asked before
        every block (``block_s``: the slowest block so far, None before the first); when it
        says no, :class:`OutOfTime` is raised and the epoch is abandoned (``state`` has been
        donated to the blocks that ran: the caller keeps the last finished epoch)."""
        plan = self.epoch_plan(epoch)
        start = 0
        hyper = self.hyper()
        lengths = self.blocks()
        for k, length in enumerate(lengths):
            if may_continue is not None and not may_continue(len(lengths) - k, getattr(self, "block_s", None)):
                raise OutOfTime(f"epoch {epoch + 1}: {len(lengths) - k} of {len(lengths)} blocks left")
            t0 = time.perf_counter()
            block = self.place_block(tuple(a[start : start + length] for a in plan))
            state = self._executable(state, block)(state, block, self.device_data, hyper)
            start += length
            if progress is not None or may_continue is not None:
                jax.block_until_ready(state.params)
                self.block_s = max(getattr(self, "block_s", 0.0), time.perf_counter() - t0)
            if progress is not None:
                progress(start, self.steps)
        jax.block_until_ready(state.params)
        return state

    # -- evaluation
    def _logits(self, state: TrainState, x_uint8: np.ndarray):
        """(logits (n, 10) float64, feature norms (n,)) in eval mode, batched with padding."""
        variables = {"params": state.params}
        if self.cfg.norm == "batch":
            variables["batch_stats"] = state.batch_stats
        bs = self.cfg.eval_batch_size
        _, _, mean, std = self.device_data
        n = x_uint8.shape[0]
        logits, norms = [], []
        for s in range(0, n, bs):
            xb = x_uint8[s : s + bs]
            m = xb.shape[0]
            if m < bs:
                xb = np.concatenate([xb, np.zeros((bs - m,) + xb.shape[1:], xb.dtype)])
            args = (variables, jnp.asarray(xb) if self.mesh is None else parallel.put(xb, self.mesh, axis=0), mean, std)
            lg, nm = _compiled("eval", self.spec, *args)(*args)
            logits.append(np.asarray(parallel.to_host(lg), np.float64)[:m])
            norms.append(np.asarray(parallel.to_host(nm), np.float64)[:m])
        return np.concatenate(logits), np.concatenate(norms)

    def evaluate(self, state: TrainState) -> dict:
        """Per-epoch metrics (docs/cifar.md lists them)."""
        d = self.data
        n_eval = self.n_train if self.cfg.eval_train_size is None else min(self.cfg.eval_train_size, self.n_train)
        lt, _ = self._logits(state, d.x_test)
        lr_, fn = self._logits(state, d.x_train[:n_eval])
        yn, yc, mask = d.y_noisy[:n_eval], d.y_clean[:n_eval], d.noise_mask[:n_eval]

        def loss_acc(logits, y):
            lse = np.logaddexp.reduce(logits, axis=1)
            loss = lse - logits[np.arange(len(y)), y]
            return loss, (np.argmax(logits, axis=1) == y)

        test_loss, test_hit = loss_acc(lt, d.y_test)
        tr_loss, tr_hit = loss_acc(lr_, yn)
        _, tr_hit_true = loss_acc(lr_, yc)
        mean_or_nan = lambda a: float(np.mean(a)) if a.size else float("nan")  # noqa: E731
        return {
            "test_acc": mean_or_nan(test_hit),
            "test_loss": mean_or_nan(test_loss),
            "train_acc": mean_or_nan(tr_hit),
            "train_loss": mean_or_nan(tr_loss),
            "train_acc_clean": mean_or_nan(tr_hit[~mask]),
            "train_acc_noisy": mean_or_nan(tr_hit[mask]),
            "train_acc_noisy_true": mean_or_nan(tr_hit_true[mask]),
            "train_loss_clean": mean_or_nan(tr_loss[~mask]),
            "train_loss_noisy": mean_or_nan(tr_loss[mask]),
            "last_layer_norm": float(np.linalg.norm(np.asarray(parallel.to_host(head_kernel(state.params)),
                                                               np.float64))),
            "feature_norm": mean_or_nan(fn),
            "n_eval_train": int(n_eval),
        }



# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, state: TrainState, meta: dict) -> None:
    """All leaves of ``state`` plus a JSON ``meta`` (epoch, metrics, hash), atomically; on
    several hosts only process 0 writes (the state is replicated)."""
    import io

    if not shard.is_primary():
        return
    leaves = jax.tree_util.tree_leaves(state)
    buf = io.BytesIO()
    np.savez(buf, meta=np.asarray(json.dumps(meta)), **{f"leaf_{i}": parallel.to_host(a) for i, a in enumerate(leaves)})
    _atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(path: Path, template: TrainState) -> tuple[TrainState, dict]:
    """Inverse of :func:`save_checkpoint`; shapes/dtypes are checked against ``template``."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        n = sum(1 for k in z.files if k.startswith("leaf_"))
        if n != len(leaves):
            raise ValueError(f"checkpoint {path} has {n} arrays, the model needs {len(leaves)}")
        new = []
        for i, ref in enumerate(leaves):
            a = z[f"leaf_{i}"]
            ref_dtype = ref.dtype if hasattr(ref, "dtype") else np.asarray(ref).dtype
            if a.shape != np.shape(ref) or a.dtype != ref_dtype:
                raise ValueError(f"checkpoint {path}: array {i} is {a.dtype}{a.shape}, expected "
                                 f"{ref_dtype}{np.shape(ref)}")
            new.append(jnp.asarray(a))
    return jax.tree_util.tree_unflatten(treedef, new), meta



# ----------------------------------------------------------------------------- the run


def _fmt_progress(method, epoch, epochs, step, steps, t0):
    rate = step / max(time.perf_counter() - t0, 1e-9)
    return f"[{method}] epoch {epoch}/{epochs} step {step}/{steps} ({rate:.1f} steps/s)"


#: Safety factors of the time plan: the next block is charged the slowest block so far
#: times BLOCK_SAFETY, the evaluation and writes after it their slowest measured cost times
#: TAIL_SAFETY (the first epoch: the timed evaluation batch and the timed setup checkpoint).
BLOCK_SAFETY = 1.25
TAIL_SAFETY = 1.5
#: The first block of a method, before anything of it is timed, is charged its FLOPs at the
#: previous method's measured seconds per FLOP times this, then x BLOCK_SAFETY like any block.
#: (2.0 refused 1-SAM outright in a CPU run where its block took 1.7x SGD's for 2.07x the
#: FLOPs; an underestimate only takes time from the methods after it, inside the total.)
FIRST_BLOCK_SAFETY = 1.0

#: Statuses of a method's results (docs/cifar.md).
STATUSES = ("running", "completed", "time_limit", "interrupted", "killed")


def run_method(cfg: CifarConfig, data: PreparedData, out_dir: str | os.PathLike, *, fresh: bool = False,
               stop_after_epochs: int | None = None, verbose: bool = True, extra_info: dict | None = None,
               on_epoch: Callable | None = None, deadline: float | None = None,
               seconds_per_flop: float | None = None, devices: int | None = None) -> dict:
    """Train one method, checkpointing each epoch in ``out_dir``; returns its results dict.

    Resumes from ``out_dir/checkpoint.npz`` when its config hash matches (``fresh=True``
    starts over). ``stop_after_epochs`` ends this call after that many new epochs (a
    simulated interruption; the checkpoint lets a later call continue). ``out_dir/results.json``
    is rewritten atomically after every epoch, after which ``on_epoch()`` is called.

    Time (``cfg.time_limit_s`` from the start of this call, and ``deadline``, a
    :func:`time.monotonic` value; the earlier one counts): the compile is measured and
    charged; before every block of training (:meth:`Trainer.blocks`) the blocks left in the
    epoch are charged the slowest block so far (x :data:`BLOCK_SAFETY`) plus the evaluation
    and the writes that end an epoch, measured (x :data:`TAIL_SAFETY`); when that passes the
    deadline the method stops with status ``time_limit`` and keeps its finished epochs. Not
    bounded in advance: the compile itself, and the first block of the method, which is charged
    ``seconds_per_flop`` (measured on the method before, see :func:`run`) times its FLOPs x
    :data:`FIRST_BLOCK_SAFETY` when given, else nothing. KeyboardInterrupt leaves status ``interrupted``, :class:`Terminated`
    (SIGTERM) ``killed``, both written before the exception goes on.

    ``devices``: the data-parallel mesh holds the first ``devices`` of ``jax.devices()``
    (default: all of them, every process's; :mod:`linsam.cifar.parallel`). On several
    processes every process calls this with the same arguments; process 0 writes.
    """
    cfg = validate_config(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    limits = [t for t in (None if cfg.time_limit_s is None else t_start + cfg.time_limit_s, deadline) if t is not None]
    stop_at = min(limits) if limits else None
    say = print if verbose and shard.is_primary() else (lambda *a, **k: None)
    chash = config_hash(cfg, data.info["fingerprint"])
    ckpt = out / "checkpoint.npz"
    trainer = Trainer(cfg, data, devices)
    state = trainer.init_state()
    epochs_done: list[dict] = []
    meta_extra = {}
    if ckpt.exists() and not fresh:
        try:
            loaded, meta = load_checkpoint(ckpt, state)
        except Exception as err:
            raise ValueError(f"cannot resume from {ckpt}: {err}; use --fresh to start over") from err
        if meta.get("config_hash") != chash:
            raise ValueError(f"{ckpt} belongs to a run with a different configuration (hash {meta.get('config_hash')} "
                             f"!= {chash}); use --fresh to overwrite it or choose another --out")
        state, epochs_done = trainer.place(loaded), meta["epochs"]
        trainer.lam_last, trainer.lam_act = meta.get("lam_last"), meta.get("lam_act")
        meta_extra = meta.get("compile", {})
        if epochs_done:
            say(f"[{cfg.method}] resuming after epoch {len(epochs_done)} from {ckpt}", flush=True)
    shard.barrier(f"linsam cifar {out}: every process has read its checkpoint")  # before process 0 writes
    if fresh and ckpt.exists() and shard.is_primary():
        ckpt.unlink()
    if not epochs_done:
        trainer.calibrate(state)
    status = "completed" if len(epochs_done) >= cfg.epochs else "running"
    stop_reason = None
    timing = {"compile_s": None, "max_block_s": None, "block_flops": None, "max_eval_s": None, "max_write_s": None,
              "time_limit_s": cfg.time_limit_s,
              "deadline_in_s": None if stop_at is None else round(stop_at - t_start, 3)}

    def results(status_now, compile_s=None):
        return {
            "schema": SCHEMA,
            "method": cfg.method,
            "hyper": method_hyper(trainer.method),
            "status": status_now,
            "stop_reason": stop_reason,
            "config": config_dict(cfg),
            "config_hash": chash,
            "versions": _versions(),
            "linsam_version": linsam.__version__,
            "device": device_description(),
            "data": data.info,
            "model": {"arch": model_arch_name(cfg), "width": cfg.width, "norm": cfg.norm,
                      "compute_dtype": cfg.compute_dtype, "rule_compute_dtype": trainer.spec.rule_dtype,
                      "n_params": count_params(state.params)},
            "steps_per_epoch": trainer.steps,
            "parallel": {"devices": trainer.num_devices, "processes": jax.process_count(),
                         "per_shard_rule": trainer.num_devices > 1 and cfg.method in parallel.SHARD_MEAN_METHODS
                         and cfg.norm != "batch"},
            "lam_last": trainer.lam_last, "lam_act": trainer.lam_act,
            "compile_s": compile_s if compile_s is not None else meta_extra.get("compile_s"),
            "compile": getattr(trainer, "compile_info", None),
            "timing": timing,
            "epochs": epochs_done,
            "summary": summarize(epochs_done),
            **(extra_info or {}),
        }

    def record(status_now):
        write_json_atomic(out / "results.json", results(status_now, compile_s))
        if on_epoch is not None:
            on_epoch()

    def save(st):
        save_checkpoint(ckpt, st, {"config_hash": chash, "epochs": epochs_done, "lam_last": trainer.lam_last,
                                   "lam_act": trainer.lam_act, "compile": meta_extra})

    compile_s = None
    try:
        if status != "completed":
            if shard.agree(stop_at is not None and time.monotonic() >= stop_at):
                status, stop_reason = "time_limit", "no time left to start this method"
                say(f"[{cfg.method}] skipped: no time left", flush=True)
                record(status)
                return results(status, compile_s)
            say(f"[{cfg.method}] {trainer.n_train} train images ({data.info['n_noisy']} noisy, realised noise rate "
                f"{data.realised_rate:.4f}), {trainer.steps} steps/epoch, {cfg.epochs} epochs; compiling ...",
                flush=True)
            record("running")
            compile_s = trainer.compile(state)
            meta_extra = {"compile_s": compile_s}
            timing["compile_s"] = compile_s
            ci = trainer.compile_info
            say(f"[{cfg.method}] compiled in {compile_s:.1f}s: {ci['train_programs']} training program(s) "
                f"({ci['train_compile_s']:.1f}s; {ci['blocks_per_epoch']} blocks of {ci['block_steps']} steps per "
                f"epoch), {ci['eval_programs']} evaluation program(s) ({ci['eval_compile_s']:.1f}s)", flush=True)
            t0 = time.monotonic()
            save(state)  # the setup checkpoint: also times the write that ends every epoch
            tail_s = trainer.eval_seconds_estimate() + (time.monotonic() - t0)
        new_epochs = 0

        def may_continue(blocks_left, block_s):
            if stop_at is None:
                return True
            if block_s is None and seconds_per_flop is not None and getattr(trainer, "block_flops", None):
                block_s = FIRST_BLOCK_SAFETY * seconds_per_flop * trainer.block_flops / BLOCK_SAFETY
            now = time.monotonic()
            need = TAIL_SAFETY * tail_s + (0.0 if block_s is None else BLOCK_SAFETY * block_s * blocks_left)
            return shard.agree(now + need <= stop_at)  # every process takes process 0's decision

        while len(epochs_done) < cfg.epochs:
            if stop_after_epochs is not None and new_epochs >= stop_after_epochs:
                status, stop_reason = "interrupted", f"stop_after_epochs={stop_after_epochs}"
                break
            e = len(epochs_done)
            t0 = time.perf_counter()
            prog = None
            if verbose and len(trainer.blocks()) > 1:
                def prog(s, n, e=e, t0=t0):
                    say(_fmt_progress(cfg.method, e + 1, cfg.epochs, s, n, t0), flush=True)
            try:
                state = trainer.train_epoch(state, e, prog, may_continue=may_continue)
            except OutOfTime as err:
                status = "time_limit"
                blk = getattr(trainer, "block_s", None)
                stop_reason = (f"the rest of epoch {e + 1} would pass the time limit ({err}; slowest block "
                               f"{'not run yet' if blk is None else f'{blk:.2f}s'}, evaluation + writes "
                               f"{tail_s:.2f}s, {stop_at - time.monotonic():.1f}s left)")
                say(f"[{cfg.method}] stopping: {stop_reason}", flush=True)
                break
            t1 = time.perf_counter()
            m = trainer.evaluate(state)
            t2 = time.perf_counter()
            m = {"epoch": e + 1, "step": (e + 1) * trainer.steps,
                 "lr": float(trainer.learning_rates([(e + 1) * trainer.steps - 1])[0]), **m,
                 "epoch_time_s": t1 - t0, "eval_time_s": t2 - t1}
            epochs_done.append(m)
            new_epochs += 1
            save(state)
            status = "completed" if len(epochs_done) >= cfg.epochs else "running"
            timing["max_block_s"] = getattr(trainer, "block_s", None)
            timing["block_flops"] = getattr(trainer, "block_flops", None)
            timing["max_eval_s"] = max(timing["max_eval_s"] or 0.0, t2 - t1)
            record(status)
            t3 = time.perf_counter()
            timing["max_write_s"] = max(timing["max_write_s"] or 0.0, t3 - t2)
            tail_s = max(tail_s, t3 - t1)
            say(f"[{cfg.method}] epoch {e + 1}/{cfg.epochs}: test acc {m['test_acc']:.4f}  train acc clean "
                f"{m['train_acc_clean']:.4f} noisy(fit) {m['train_acc_noisy']:.4f}  train loss {m['train_loss']:.4f}  "
                f"|W_last| {m['last_layer_norm']:.3f} |phi| {m['feature_norm']:.3f}  {m['epoch_time_s']:.1f}s",
                flush=True)
    except KeyboardInterrupt:
        stop_reason = "KeyboardInterrupt"
        record("interrupted")
        raise
    except Terminated:
        stop_reason = "SIGTERM (e.g. the outer time guard of bench/gpu_cifar.sh)"
        record("killed")
        raise
    res = results(status, compile_s)
    write_json_atomic(out / "results.json", res)
    return res




def method_deadlines(now: float, deadline: float | None, shares: dict | None, methods: list[str]):
    """Deadline of the first of ``methods`` when the time left, ``deadline - now``, is split
    by ``shares`` over the methods still to run (a method that ends early leaves its time to
    the rest). None when there is no deadline."""
    if deadline is None:
        return None
    if not shares:
        return deadline
    w = [float(shares.get(m, 1.0)) for m in methods]
    return now + max(deadline - now, 0.0) * w[0] / sum(w)


def run(configs: list[CifarConfig], out_dir: str | os.PathLike, *, data_path=None, fresh: bool = False,
        stop_after_epochs: int | None = None, verbose: bool = True, plot: bool = True,
        dataset: cdata.CIFAR10 | None = None, extra_info: dict | None = None,
        work_dir: str | os.PathLike | None = None, deadline: float | None = None,
        time_shares: dict | None = None, devices: int | None = None) -> dict:
    """Run several methods (one config each, same data and noise).

    Per-method results and checkpoints go to ``work_dir/<method>/`` (default: ``out_dir``);
    the aggregate ``out_dir/results.json`` is rewritten after every epoch and, with ``plot``,
    the figure ``out_dir/curves.png`` after each method (a failed figure is a warning). So
    with a separate ``work_dir``, ``out_dir`` holds only those two files. Nothing is created
    before the data has loaded. ``deadline`` (:func:`time.monotonic`) ends the whole call:
    each method gets the time left split by ``time_shares`` (e.g. ``{"gd": 1, "one_sam":
    2}``) over the methods still to run, within its own ``time_limit_s``. Loads the data
    once (``dataset`` to pass arrays directly, e.g. in tests). ``devices``: the data-parallel
    mesh (:func:`run_method`). Returns the aggregate dict.
    """
    configs = [validate_config(c) for c in configs]
    names = [c.method for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"--method lists a method twice: {names}")
    base = {k: v for k, v in config_dict(configs[0]).items() if k not in ("method", "lam_last", "lam_act")}
    for c in configs[1:]:
        d = {k: v for k, v in config_dict(c).items() if k not in ("method", "lam_last", "lam_act", "time_limit_s")}
        b = {k: v for k, v in base.items() if k != "time_limit_s"}
        if d != b:
            raise ValueError("all methods of one run must share the data/noise/training settings")
    out = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out
    if dataset is None:
        cdata.check_data_path(data_path)
        dataset = cdata.load_cifar10(data_path, verbose=verbose)
    prepared = prepare_data(dataset, configs[0])
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    if verbose:
        print(f"[cifar] {prepared.info['n_train']} train / {prepared.info['n_test']} test images from "
              f"{prepared.info['source']}; noise {configs[0].noise_kind} p={configs[0].noise_rate}: realised rate "
              f"{prepared.realised_rate:.4f} ({prepared.info['n_noisy']} flipped); device {device_description()}",
              flush=True)
        if deadline is not None:
            print(f"[cifar] time left for the methods: {deadline - time.monotonic():.0f}s (shares "
                  f"{time_shares or 'equal: none'})", flush=True)
    agg = None
    seconds_per_flop = None
    for i, c in enumerate(configs):
        dl = method_deadlines(time.monotonic(), deadline, time_shares, names[i:])
        try:
            res = run_method(c, prepared, work / c.method, fresh=fresh, stop_after_epochs=stop_after_epochs,
                             verbose=verbose, extra_info=extra_info, deadline=dl, seconds_per_flop=seconds_per_flop,
                             on_epoch=lambda: aggregate(out, names, work_dir=work), devices=devices)
            t = res.get("timing") or {}
            if t.get("max_block_s") and t.get("block_flops"):
                seconds_per_flop = t["max_block_s"] / t["block_flops"]
        except BaseException:
            aggregate(out, names, work_dir=work)  # the results, quickly (no figure: SIGKILL may follow)
            raise
        agg = aggregate(out, names, work_dir=work)
        if plot:
            draw_figure(agg, out)
    if verbose and agg is not None:
        for m, r in agg["methods"].items():
            peak = "none" if r["peak_test_acc"] is None else f"{r['peak_test_acc']:.4f}"
            print(f"[cifar] {m}: peak test acc {peak} at epoch {r['peak_epoch']} "
                  f"({r['completed_epochs']} epochs, {r['status']})", flush=True)
    return agg


def finalize(out_dir: str | os.PathLike, *, work_dir: str | os.PathLike | None = None, killed: bool = False,
             plot: bool = True) -> dict:
    """After a run ended, however it ended: mark methods still ``running`` as ``killed``
    (when ``killed``: the process was stopped from outside, e.g. SIGKILL after the time
    guard), rewrite ``out_dir/results.json`` (and the figure), and remove temporary files
    a killed atomic write left in ``out_dir``. Used by bench/gpu_cifar.sh."""
    out = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out
    if killed:
        for name, r in _read_method_results(work).items():
            if r.get("status") == "running":
                r["status"] = "killed"
                r["stop_reason"] = "stopped from outside while running (the outer time guard: SIGTERM/SIGKILL)"
                write_json_atomic(work / name / "results.json", r)
    for tmp in out.glob(".*.tmp") if out.exists() else []:
        tmp.unlink()
    agg = aggregate(out, work_dir=work)
    if plot:
        draw_figure(agg, out)
    return agg



def _usage() -> dict:
    """CPU seconds (user + system) of this process and its finished children."""
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"cpu_user_s": s.ru_utime + c.ru_utime, "cpu_system_s": s.ru_stime + c.ru_stime}


def run_seeds(configs: list[CifarConfig], seeds, out_dir: str | os.PathLike, *, data_path=None,
              dataset: cdata.CIFAR10 | None = None, work_dir: str | os.PathLike | None = None,
              deadline: float | None = None, time_shares: dict | None = None, plot: bool = True,
              verbose: bool = True, fresh: bool = False, extra_info: dict | None = None,
              started: float | None = None, devices: int | None = None) -> dict:
    """Run the methods of ``configs`` once per seed (each seed's data subset, label noise and
    initial weights from that seed), then combine them with paired intervals over the seeds.

    Seed ``s`` is a whole :func:`run` into ``work_dir/seed_<s>/`` (default ``work_dir =
    out_dir``; its per-method results and checkpoints, and its own aggregate); after each seed
    ``out_dir/results.json`` (:func:`aggregate_seeds`) and ``out_dir/curves.png`` are rewritten.
    The data are loaded once. ``deadline`` (:func:`time.monotonic`) ends the whole call: each
    seed gets an equal part of the time left, split over its methods by ``time_shares``.
    ``started`` (a :func:`time.monotonic` value, e.g. the process start) gives the call's wall
    time in the results (``run.wall_s``, with the process's CPU seconds). Returns the aggregate.
    """
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ValueError(f"--seeds must list distinct integers >= 0, got {seeds}")
    configs = [validate_config(c.replace(seed=seeds[0])) for c in configs]
    started = time.monotonic() if started is None else started
    if dataset is None:
        cdata.check_data_path(data_path)
        dataset = cdata.load_cifar10(data_path, verbose=verbose)
    out = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out
    agg = None
    for i, s in enumerate(seeds):
        now = time.monotonic()
        dl = None if deadline is None else now + max(deadline - now, 0.0) / (len(seeds) - i)
        if verbose:
            print(f"[cifar] seed {s} ({i + 1}/{len(seeds)})", flush=True)
        run([c.replace(seed=s) for c in configs], _seed_dir(work, s), dataset=dataset, work_dir=_seed_dir(work, s),
            deadline=dl, time_shares=time_shares, plot=False, verbose=verbose, fresh=fresh, extra_info=extra_info,
            devices=devices)
        extra = {"preset": (extra_info or {}).get("preset"),
                 "run": {"wall_s": time.monotonic() - started, **_usage(), "complete": i == len(seeds) - 1}}
        agg = aggregate_seeds(out, seeds, work_dir=work, extra=extra)
        if plot:
            draw_seed_figure(agg, out)
    if verbose and agg is not None:
        for m, r in agg["methods"].items():
            ci, g = r["peak_test_acc_ci"], r.get("gain_over_gd")
            gain = "" if g is None else f"; paired gain over SGD {g['mean']:+.4f} [{g['lo']:+.4f}, {g['hi']:+.4f}]"
            print(f"[cifar] {m}: peak test acc {ci['mean']:.4f} [{ci['lo']:.4f}, {ci['hi']:.4f}] over {ci['n']} seeds "
                  f"(mean peak epoch {r['peak_epoch']:.1f}){gain}", flush=True)
    return agg
