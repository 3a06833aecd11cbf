r"""Training driver: CIFAR-10 + label noise + ResNet-18 + a linsam method value + optax SGD.

One training step on a mini-batch :math:`B` of noisy-labelled examples is

.. math::

    u &= \mathrm{direction}_{\mathrm{method}}(\theta; B)
        \quad\text{(}\texttt{linsam.optax.from\_method(method, model)}\text{)} \\
    m &\leftarrow \beta m + u + \lambda_{\mathrm{wd}} \theta, \qquad
    \theta \leftarrow \theta - \eta_k m

(``optax.chain(linsam.optax.from_method(method, model), add_decayed_weights(wd),
trace(momentum), scale(-lr_k))``: the rule's direction replaces the gradient, then optax's
``sgd`` with PyTorch-style coupled weight decay and heavy-ball momentum :math:`\beta`). The
method is a :mod:`linsam.rules` value whose hyper-parameters (``rho``, ``lam_last``,
``lam_act``) are float32 pytree leaves, an argument of the compiled step, so they are traced,
not compiled in; ``chunk_size`` is static. The learning rate :math:`\eta_k` is an optax
schedule (cosine decay to 0 over all steps, a step schedule x0.1 at 50% and 75% of the steps,
or constant) evaluated on the host and fed to the compiled step, so one compiled program per
method serves every schedule, learning rate, rho, regulariser coefficient and weight decay.

Methods (``--method``): the library's names, :data:`linsam.rules.METHODS`, parsed once at the
edge (:func:`parse_method`; the value is built by :func:`method_value`):

==============  ====================================================================
name            direction (:mod:`linsam.rules`)
==============  ====================================================================
``gd``          plain mini-batch gradient (SGD)
``nsam``        SAM, one perturbation for the batch
``one_sam``     1-SAM, per-example perturbation
``lsam``        logit scale at the perturbed point, Jacobian at :math:`\theta`
``jsam``        logit scale at :math:`\theta`, Jacobian at the perturbed point
``jreg``        GD + :math:`\rho\|J_i^\top \mathrm{sg}(r_i)\|` (Prop. 4.1 penalty)
``jreg_fixed``  GD + :math:`\frac{\lambda_{\rm last}}2\|W_{\rm head}\|^2
                + \frac{\lambda_{\rm act}}2 \mathrm{mean}_i\|\phi_i\|^2`
==============  ====================================================================

Default coefficients of ``jreg_fixed`` (Proposition 4.1). For the 2-layer linear network
:math:`f = v^\top W x`, J-SAM adds to the SGD gradient
:math:`\frac{\rho s}{J} (W x) x^\top` on :math:`W` and :math:`\frac{\rho s \|x\|^2}{J} v` on
:math:`v`, i.e. the gradients of :math:`\frac{\lambda_{\rm act}}2 \|Wx\|^2` and
:math:`\frac{\lambda_{\rm last}}2\|v\|^2` with

.. math::

    \lambda_{\mathrm{act}} = \frac{\rho\, s}{J}, \qquad
    \lambda_{\mathrm{last}} = \frac{\rho\, s\, q}{J}, \qquad
    s = \|\nabla_f \ell\|,\quad J = \|\nabla_\theta \langle \hat r, f(\theta, x)\rangle\|,\quad
    q = \frac{\|\nabla_{\theta_{\rm body}} \langle u, \phi(\theta, x)\rangle\|^2}{\|u\|^2},

where :math:`\hat r = r/\|r\|` is the unit logit direction, :math:`u = W_{\rm head}\hat r` and
:math:`\phi` the penultimate activations. For the linear network :math:`q = \|x\|^2`,
:math:`J = \sqrt{\|Wx\|^2 + \|x\|^2\|v\|^2}` and the formulas are exactly Prop. 4.1. For the
ResNet they are the same quantities with :math:`(W_{\rm head}, \phi)` in the roles of
:math:`(v, Wx)`; linsam evaluates them per example at initialisation on the first
``batch_size`` training examples (no augmentation) and uses the batch means as the fixed
coefficients (:func:`prop41_coefficients`). Both values are written to the results; they can
be overridden (``lam_last``, ``lam_act``).

The driver is split by concern (this module re-exports every name, so ``linsam.cifar.train``
keeps working as before):

- :mod:`linsam.cifar.config`: :class:`CifarConfig`, :func:`validate_config`, the config hash;
- :mod:`linsam.cifar.plan`: the data plan (subset, label noise, steps, blocks, schedule);
- :mod:`linsam.cifar.programs`: the optax chain, the method value, the compiled programs;
- :mod:`linsam.cifar.loop`: :class:`Trainer`, checkpoints, :func:`run_method`, :func:`run`,
  :func:`run_seeds`;
- :mod:`linsam.cifar.results`: summaries, aggregates, figures.
"""

from __future__ import annotations

from linsam.cifar.config import (  # noqa: F401
    METHODS,
    PER_EXAMPLE_METHODS,
    PERTURBED_METHODS,
    SCHEDULES,
    ARCHS,
    NO_NORM,
    MAX_CNN_DEPTH,
    SCHEMA,
    rule_compute_dtype,
    parse_method,
    CifarConfig,
    _NON_RESULT_FIELDS,
    FLAG_OF_FIELD,
    _err,
    _is_int,
    _is_real,
    validate_config,
    config_dict,
    config_hash,
)
from linsam.cifar.plan import (  # noqa: F401
    PreparedData,
    prepare_data,
    steps_per_epoch,
    make_schedule,
    block_length,
)
from linsam.cifar.programs import (  # noqa: F401
    model_arch_name,
    make_optimizer,
    method_value,
    method_chunks,
    method_hyper,
    TrainState,
    _cast_like,
    ProgramSpec,
    program_spec,
    _net_spec,
    rule_spec,
    rule_model,
    _train_block_program,
    _eval_program,
    _prop41_program,
    prop41_coefficients,
    _EXECUTABLES,
    COMPILE_EVENTS,
    COMPILER_OPTIONS,
    _compiled,
    _signature,
    _block_flops,
)
from linsam.cifar.loop import (  # noqa: F401
    OutOfTime,
    Terminated,
    Trainer,
    save_checkpoint,
    load_checkpoint,
    _fmt_progress,
    BLOCK_SAFETY,
    TAIL_SAFETY,
    FIRST_BLOCK_SAFETY,
    STATUSES,
    run_method,
    method_deadlines,
    run,
    finalize,
    _usage,
    run_seeds,
)
from linsam.cifar.results import (  # noqa: F401
    _atomic_write_bytes,
    write_json_atomic,
    summarize,
    device_description,
    _versions,
    _read_method_results,
    aggregate,
    draw_figure,
    _draw,
    SEEDS_SCHEMA,
    CURVE_KEYS,
    _seed_dir,
    _interval,
    aggregate_seeds,
    draw_seed_figure,
)
