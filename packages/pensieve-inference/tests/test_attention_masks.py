"""Unpadded batches attend with no mask array, and decode exactly as mlx-lm's masked batches do."""

import mlx.core as mx
import pytest
from mlx_lm import load
from mlx_lm.generate import BatchGenerator
from mlx_lm.models.cache import BatchKVCache

from pensieve_inference import attention_masks


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load(str(tiny_model_dir))[0]


def test_only_an_unpadded_batch_drops_its_mask():
    with attention_masks.installed(True):
        assert BatchKVCache([0, 0]).make_mask(1) is None
        assert BatchKVCache([0, 0]).make_mask(3) == "causal"
        padded = BatchKVCache([0, 2]).make_mask(1)
        assert isinstance(padded, mx.array) and not padded.all().item()
        assert isinstance(BatchKVCache([0, 0]).make_mask(1, return_array=True), mx.array)
    with attention_masks.installed(False):
        assert isinstance(BatchKVCache([0, 0]).make_mask(1), mx.array)


def _greedy(model, prompts, tokens=12):
    gen = BatchGenerator(model, stop_tokens=[])
    uids = gen.insert(prompts, [tokens] * len(prompts))
    out = {uid: [] for uid in uids}
    finished = 0
    while finished < len(prompts):
        for r in gen.next_generated():
            out[r.uid].append(r.token)
            finished += r.finish_reason is not None
    gen.close()
    return [out[uid] for uid in uids]


@pytest.mark.parametrize(
    "prompts",
    [
        [[5, 9, 14, 3, 7]] * 3,
        [[5, 9, 14, 3, 7], [21, 4, 8, 30, 2], [11, 12, 13, 14, 15]],
        [[5, 9, 14], [3, 7, 21, 4, 8, 30]],
    ],
    ids=["same prompt", "same length", "padded"],
)
def test_decoding_is_exactly_mlx_lms(model, prompts):
    with attention_masks.installed(False):
        reference = _greedy(model, prompts)
    with attention_masks.installed(True):
        assert _greedy(model, prompts) == reference


def test_a_padded_row_needs_its_mask(model):
    """The rewrite is only sound without padding: a padded row decoded unmasked goes wrong."""
    cache = [BatchKVCache([0, 4]) for _ in model.layers]
    prompts = mx.array([[5, 9, 14, 3, 7, 21], [0, 0, 0, 0, 3, 7]])
    masked = model(prompts, cache=cache)[:, -1]
    unmasked_cache = [BatchKVCache([0, 0]) for _ in model.layers]
    unmasked = model(prompts, cache=unmasked_cache)[:, -1]
    assert mx.allclose(masked[0], unmasked[0]).item()  # the unpadded row: the same either way
    assert not mx.allclose(masked[1], unmasked[1]).item()


def test_batching_installs_it():
    import pensieve_inference.batching  # noqa: F401

    assert attention_masks.is_installed()
