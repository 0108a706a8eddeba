import pytest

from pensieve_core import TextDelta, ToolCall
from pensieve_inference import ToolCallSplitter

OUTPUT = 'Sure.<tool_call>\n{"name": "get", "arguments": {"city": "Oslo"}}\n</tool_call>'


def split(pieces, **kw):
    s = ToolCallSplitter(start="<tool_call>", end="</tool_call>", tool_names={"get"}, **kw)
    events = [e for p in pieces for e in s.feed(p)] + s.finish()
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    calls = [e for e in events if isinstance(e, ToolCall)]
    return text, calls


@pytest.mark.parametrize("cut", range(len(OUTPUT) + 1))
def test_call_is_found_wherever_the_stream_is_cut(cut):
    text, calls = split([OUTPUT[:cut], OUTPUT[cut:]])
    assert text == "Sure."
    assert [(c.name, c.input) for c in calls] == [("get", {"city": "Oslo"})]
    assert calls[0].id.startswith("toolu_")


def test_character_by_character_with_two_calls():
    text, calls = split(list(OUTPUT + " and " + OUTPUT))
    assert text == "Sure. and Sure."
    assert len(calls) == 2


def test_malformed_call_comes_back_as_text():
    bad = "<tool_call>{not json}</tool_call>"
    assert split([bad]) == (bad, [])


def test_unknown_tool_comes_back_as_text():
    bad = '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>'
    assert split([bad]) == (bad, [])


def test_unterminated_call_is_parsed_if_complete_else_text():
    assert split(['<tool_call>{"name": "get", "arguments": {}}'])[1][0].input == {}
    assert split(['<tool_call>{"name": "ge'])[0] == '<tool_call>{"name": "ge'


def test_arguments_given_as_a_json_string():
    _, calls = split(['<tool_call>{"name": "get", "arguments": "{\\"city\\": \\"Rome\\"}"}</tool_call>'])
    assert calls[0].input == {"city": "Rome"}
