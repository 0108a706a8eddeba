"""A rank other than 0 of a model sharded across processes (`pensieve start --hostfile` starts
it): join the group, take rank 0's settings, load this rank's shard, follow rank 0's turns
until it stops. It serves nothing itself; a failure here ends the process, which rank 0 sees
as a lost rank."""

from __future__ import annotations

import os
import sys

import msgspec
import structlog

from pensieve_core import Settings
from pensieve_inference import EngineOptions, Lockstep, MLXEngine
from pensieve_metal import apply_memory_limits
from pensieve_model_support import HuggingFaceHub, resolve_reference

log = structlog.get_logger("pensieve.follower")


def follow() -> None:
    sys.stdout.write("pensieve-rank-ready\n")  # rank 0 joins once every rank says this (ranks.READY)
    sys.stdout.flush()
    lockstep = Lockstep.join(os.environ.get("PENSIEVE_BACKEND", "ring"))
    settings = msgspec.json.decode(lockstep.share(None), type=Settings)
    lockstep.rank_timeout_s = settings.rank_timeout_s
    log.info("rank_following", rank=lockstep.rank, size=lockstep.size, model=settings.model)
    ref = resolve_reference(settings.model)
    engine, worker = MLXEngine.load_shard(
        ref, HuggingFaceHub(), EngineOptions.of(settings), lockstep, pipeline=settings.pipeline
    )
    # As rank 0 does for itself (startup.apply_limits), on this thread, which runs its MLX work.
    limits = apply_memory_limits(wire_bytes=engine.weights_bytes)
    log.info("memory_limits", rank=lockstep.rank, **msgspec.structs.asdict(limits))
    worker.follow(lockstep, engine.loaded, engine.rebuild)
    log.info("rank_stopped", rank=lockstep.rank)


def main() -> None:
    try:
        follow()
    except BaseException as exc:
        log.error("rank_failed", error=repr(exc), exc_info=exc)
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip MLX's static destructors (see pensieve_cli's start)


if __name__ == "__main__":
    main()
