"""The prompt encoder gives exactly the tokenizer's ids while encoding only what changed."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pensieve_inference.encoding import PromptEncoder, common_chars
from pensieve_model_support import HuggingFaceHub, load_model, resolve_reference


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_model(resolve_reference(str(tiny_model_dir)), HuggingFaceHub()).tokenizer


def plain(tokenizer, text):
    return tokenizer.encode(text, add_special_tokens=False)


def chat(turns):
    return "".join(f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in turns) + "<|im_start|>assistant\n"


# Text near what templates emit: words, spaces and newlines at the edges, non-ASCII, and pieces
# of the special tokens' own spelling.
pieces = st.sampled_from(["hello", " world", "\n", "  ", "\t", "é", "日本", "<|im_", "end|>", "<", "|", "12", "🙂"])
texts = st.lists(pieces, max_size=12).map("".join)
turns = st.lists(st.tuples(st.sampled_from(["system", "user", "assistant"]), texts), min_size=1, max_size=5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(turns, min_size=1, max_size=4), st.booleans())
def test_ids_equal_the_tokenizers_for_a_session_of_prompts(tokenizer, session, grow):
    encoder = PromptEncoder(tokenizer)
    history = []
    for added in session:
        # A growing conversation (each prompt extends the last) or unrelated prompts.
        history = [*history, *added] if grow else added
        text = chat(history)
        encoded = encoder.encode(text)
        assert encoded.ids == plain(tokenizer, text)
        assert len(encoded.ends) == len(encoded.ids)


def test_a_turn_encodes_only_what_follows_the_last_shared_special_token(tokenizer):
    encoder = PromptEncoder(tokenizer)
    system = "You are a coding agent. " * 400
    first = chat([("system", system), ("user", "Read the file.")])
    assert encoder.encode(first).fresh_chars == len(first)
    second = chat([("system", system), ("user", "Read the file."), ("assistant", "Done."), ("user", "Now edit it.")])
    encoded = encoder.encode(second)
    assert encoded.ids == plain(tokenizer, second)
    # Re-encoded from the `<|im_start|>assistant` the first prompt ended with.
    assert encoded.fresh_chars == len(second) - first.rindex("<|im_start|>")
    again = encoder.encode(second)
    assert again is encoded and again.ids == plain(tokenizer, second)


def test_tokens_within_counts_the_tokens_of_a_leading_text(tokenizer):
    encoder = PromptEncoder(tokenizer)
    head = chat([("system", "Be brief, café.")])[: -len("<|im_start|>assistant\n")]
    text = chat([("system", "Be brief, café."), ("user", "Hi 🙂")])
    assert encoder.encode(text).tokens_within(len(head)) == len(plain(tokenizer, head))


def test_common_chars():
    assert common_chars("abcdef", "abcxyz") == 3
    assert common_chars("abc", "abc") == 3
    assert common_chars("", "abc") == 0
    assert common_chars("abc", "abcd") == 3
    assert common_chars("xbc", "abc") == 0


def test_the_next_turn_takes_an_answers_ids_as_they_were_generated(tokenizer):
    encoder = PromptEncoder(tokenizer)
    turn = [("system", "Be brief."), ("user", "Greet me.")]
    prompt = encoder.encode(chat(turn))
    answer = "Hello there, friend"
    # Spelled one character a token, as a model may sample it: not how the text encodes.
    generated = [i for ch in answer for i in plain(tokenizer, ch)]
    assert generated != plain(tokenizer, answer)
    assert encoder.remember_answer(prompt, generated, answer)
    following = chat([*turn, ("assistant", answer), ("user", "Thanks.")])
    encoded = encoder.encode(following)
    assert encoded.ids[: len(prompt.ids) + len(generated)] == prompt.ids + generated
    rest = following[len(prompt.text) + len(answer) :]
    assert encoded.ids[len(prompt.ids) + len(generated) :] == plain(tokenizer, rest)
    assert encoded.fresh_chars == len(rest)


def test_an_answer_whose_ids_do_not_spell_it_is_not_kept(tokenizer):
    encoder = PromptEncoder(tokenizer)
    prompt = encoder.encode(chat([("user", "Hi")]))
    assert not encoder.remember_answer(prompt, plain(tokenizer, "Hello"), "Goodbye")
    following = chat([("user", "Hi"), ("assistant", "Goodbye"), ("user", "Why?")])
    assert encoder.encode(following).ids == plain(tokenizer, following)


def test_a_template_that_changes_the_answer_falls_back_to_encoding(tokenizer):
    encoder = PromptEncoder(tokenizer)
    prompt = encoder.encode(chat([("user", "Hi")]))
    generated = [i for ch in "Hey  " for i in plain(tokenizer, ch)]
    assert encoder.remember_answer(prompt, generated, "Hey  ")
    # The template trimmed the answer's trailing spaces: the remembered ids no longer apply.
    following = chat([("user", "Hi"), ("assistant", "Hey"), ("user", "Why?")])
    assert encoder.encode(following).ids == plain(tokenizer, following)
