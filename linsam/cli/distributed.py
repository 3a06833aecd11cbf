"""Flags for a run over several processes/hosts (``linsam cifar``, ``simulate``, ``regimes``).

    --distributed                      join the job the cluster describes (Slurm inside srun, ...)
    --coordinator HOST:PORT --num-processes N --process-id I     explicit (any launcher)

Every process runs the same command; they meet at the coordinator (process 0's address),
JAX sees every process's devices as one mesh, and process 0 alone writes results and
checkpoints (docs/scaling.md). Without these flags nothing changes: one process.
"""

from __future__ import annotations

import sys

HELP = ("several processes/hosts (docs/scaling.md): --distributed joins the job the cluster describes "
        "(Slurm: inside srun), or give --coordinator/--num-processes/--process-id")


def add_flags(parser) -> None:
    g = parser.add_argument_group("several processes or hosts", HELP)
    g.add_argument("--distributed", action="store_true",
                   help="start jax.distributed from the cluster's environment (Slurm's SLURM_* variables "
                        "inside srun; Open MPI; ...), or from the three flags below")
    g.add_argument("--coordinator", help="HOST:PORT of process 0 (also $LINSAM_COORDINATOR)")
    g.add_argument("--num-processes", type=int, dest="num_processes", help="processes in the job (also "
                                                                             "$LINSAM_NUM_PROCESSES)")
    g.add_argument("--process-id", type=int, dest="process_id", help="this process, 0 .. N-1 (also "
                                                                       "$LINSAM_PROCESS_ID)")
    g.add_argument("--init-timeout", type=int, dest="init_timeout", default=300,
                   help="seconds to wait for every process to join (default 300)")


def start(args, prog: str) -> int | None:
    """Join the multi-process job the flags ask for (before anything touches a device).
    Returns None to go on, or 2 (a refused value, message on stderr naming the flag)."""
    from linsam._src.engine import shard

    try:
        if getattr(args, "init_timeout", 300) is not None and args.init_timeout < 1:
            raise ValueError(f"--init-timeout must be an integer >= 1, got {args.init_timeout}")
        started = shard.initialize_distributed(getattr(args, "coordinator", None), getattr(args, "num_processes", None),
                                               getattr(args, "process_id", None),
                                               auto=bool(getattr(args, "distributed", False)),
                                               timeout_s=getattr(args, "init_timeout", 300))
    except ValueError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    if started:
        import jax

        print(f"{prog}: process {jax.process_index()} of {jax.process_count()}, {jax.local_device_count()} local "
              f"of {jax.device_count()} devices", file=sys.stderr, flush=True)
    return None
