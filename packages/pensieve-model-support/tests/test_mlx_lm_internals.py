"""mlx-lm's private names that pensieve uses still mean what they meant: if one of these
fails after an mlx-lm upgrade, mlx_lm_internals.py is the one place to adapt."""

from mlx_lm.models import llama, qwen3
from mlx_lm.tokenizer_utils import TokenizerWrapper
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from pensieve_model_support import hf_tokenizer, model_classes


def test_model_classes_are_found_by_model_type():
    assert model_classes({"model_type": "llama"}) == (llama.Model, llama.ModelArgs)
    assert model_classes({"model_type": "qwen3"}) == (qwen3.Model, qwen3.ModelArgs)
    # mlx-lm's remapping: Mistral checkpoints are llama models.
    assert model_classes({"model_type": "mistral"}) == (llama.Model, llama.ModelArgs)


def test_hf_tokenizer_is_the_wrapped_tokenizer_itself():
    inner = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel({"<eos>": 0, "hi": 1}, unk_token="<eos>")), eos_token="<eos>"
    )
    wrapper = TokenizerWrapper(inner)
    assert hf_tokenizer(wrapper) is inner
    assert hf_tokenizer(wrapper).backend_tokenizer is inner.backend_tokenizer
