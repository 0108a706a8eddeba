"""Rank 0's side of lockstep in one process (a group of one rank: MLX's collectives are then the
identity): every turn is shared and rebuilt as a follower would, and the answers stay those of
an engine without a group. Two real ranks run in tests/test_distributed.py."""

import asyncio
import dataclasses

import mlx.core as mx
import msgspec
import pytest

from pensieve_claude_types import MessageParam
from pensieve_core import Finished, GenerationRequest, TextDelta
from pensieve_inference import EngineOptions, Lockstep, MLXEngine
from pensieve_inference.lockstep import SHARE_BLOCK, Turn, follow_spec, follower_spec
from pensieve_model_support import HuggingFaceHub, resolve_reference


def req(text, **kw):
    return GenerationRequest(
        messages=[MessageParam(role="user", content=text)], max_tokens=8, temperature=0.0, request_id=text, **kw
    )


async def answer(engine, request):
    return "".join([e.text async for e in engine.generate(request) if isinstance(e, TextDelta)])


@pytest.fixture(scope="module")
def ranked(tiny_model_dir):
    lockstep = Lockstep(mx.distributed.init())
    options = EngineOptions(prefix_cache_bytes=64 * 1024**2)
    engine = MLXEngine.load_sync(resolve_reference(str(tiny_model_dir)), HuggingFaceHub(), options)
    ranked = asyncio.run(
        MLXEngine.load(resolve_reference(str(tiny_model_dir)), HuggingFaceHub(), options, lockstep=lockstep)
    )
    yield engine, ranked, lockstep
    for e in (engine, ranked):
        e.worker.stop()


def test_a_group_of_one_answers_as_an_engine_without_one(ranked):
    engine, grouped, lockstep = ranked
    texts = [f"Hello number {i}" for i in range(4)] + ["Hello number 0"]  # the last one hits the cache

    async def all_of(e):
        return await asyncio.gather(*(answer(e, req(t)) for t in texts))

    assert asyncio.run(all_of(grouped)) == asyncio.run(all_of(engine))
    assert lockstep.started and [r.rank for r in lockstep.ranks] == [0]
    assert lockstep.ranks[0].weights_bytes == grouped.weights_bytes > 0


def test_shared_bytes_come_back_whole_past_the_first_block():
    lockstep = Lockstep(mx.distributed.init())
    for size in (0, 5, SHARE_BLOCK - 4, SHARE_BLOCK, 5 * SHARE_BLOCK + 3):
        data = bytes(i % 251 for i in range(size))
        assert lockstep.share(data) == data
    turn = Turn(admit=[b"x" * 3000], cancel=[3], stop=False, digest=[1, 0, 7])
    assert msgspec.msgpack.decode(lockstep.share(msgspec.msgpack.encode(turn)), type=Turn) == turn


def test_a_follower_rebuilds_the_request_on_rank_0s_tokens(ranked):
    _, grouped, _ = ranked
    request = req("Rebuild me", stop_sequences=["zz"])
    rendered = grouped._renderer.prompt(request)
    # As if rank 0 had encoded its end another way (an answer remembered meanwhile).
    rendered = dataclasses.replace(rendered, tokens=[*rendered.tokens[:-1], 7])
    job = grouped.rebuild(follower_spec(request, rendered))
    assert job.prompt == rendered.tokens and job.loop is None and job.stop_sequences == ["zz"]
    again, _ = follow_spec(follower_spec(request, rendered))
    assert again == request


def test_a_lost_group_fails_new_requests_with_the_reason(tiny_model_dir):
    from pensieve_core.errors import RankLostError

    grouped = asyncio.run(
        MLXEngine.load(
            resolve_reference(str(tiny_model_dir)), HuggingFaceHub(), lockstep=Lockstep(mx.distributed.init())
        )
    )
    try:
        grouped.worker.group_lost = "a rank of the distributed model was lost (test)"
        assert grouped.degraded == "a rank of the distributed model was lost (test)"
        with pytest.raises(RankLostError, match="was lost"):
            asyncio.run(answer(grouped, req("anyone?")))
    finally:
        grouped.worker.stop()


def test_finished_still_ends_a_grouped_generation(ranked):
    _, grouped, _ = ranked

    async def events():
        return [e async for e in grouped.generate(req("The end"))]

    assert isinstance(asyncio.run(events())[-1], Finished)
