"""Each dialect on outputs written from its documented format, cut at every character."""

import json

import pytest

from pensieve_core import TextDelta, ToolInputDelta, ToolUseEnd, ToolUseStart
from pensieve_inference.dialects import DIALECTS, detect
from pensieve_inference.tool_stream import ToolCallStream

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}},
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}},
    },
]
PARIS = ("get_weather", {"city": "Paris", "days": 3})
CET = ("get_time", {"zone": "CET"})

# (dialect, model output, text around the calls, the calls) — written from each family's docs.
CASES = [
    (
        "hermes",
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</tool_call>',
        "Let me check.\n",
        [PARIS],
    ),
    (
        "hermes",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>',
        "\n",
        [PARIS, CET],
    ),
    ("generic", 'Sure.<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>', "Sure.", [CET]),
    (
        "qwen3_coder",
        "I'll look.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
        "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
        "I'll look.\n",
        [PARIS],
    ),
    (
        "mistral",
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}, '
        '{"name": "get_time", "arguments": {"zone": "CET"}}]',
        "",
        [PARIS, CET],
    ),
    (
        "mistral",
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "days": 3}[TOOL_CALLS]get_time[ARGS]{"zone": "CET"}',
        "",
        [PARIS, CET],
    ),
    ("llama3_json", '{"name": "get_weather", "parameters": {"city": "Paris", "days": 3}}', "", [PARIS]),
    ("llama3_json", '<|python_tag|>{"name": "get_time", "parameters": {"zone": "CET"}}', "", [CET]),
    ("pythonic_bare", '[get_weather(city="Paris", days=3), get_time(zone="CET")]', "", [PARIS, CET]),
    (
        "pythonic",
        'Checking.<|tool_call_start|>[get_weather(city="Paris", days=3)]<|tool_call_end|>',
        "Checking.",
        [PARIS],
    ),
]


def run(dialect, pieces, single=False):
    stream = ToolCallStream(DIALECTS[dialect], TOOLS, single=single)
    events = [e for p in pieces for e in stream.feed(p)] + stream.finish()
    text, calls, open_call = "", [], None
    for e in events:
        if isinstance(e, TextDelta):
            assert open_call is None, "text inside a tool_use block"
            text += e.text
        elif isinstance(e, ToolUseStart):
            assert open_call is None
            assert e.id.startswith("toolu_")
            open_call = [e.name, ""]
        elif isinstance(e, ToolInputDelta):
            open_call[1] += e.partial_json
        elif isinstance(e, ToolUseEnd):
            name, streamed = open_call
            assert json.loads(streamed) == e.input, "the deltas spell the input"
            calls.append((name, e.input))
            open_call = None
    assert open_call is None, "every call is ended"
    return text, calls


@pytest.mark.parametrize(
    ("dialect", "output", "text", "calls"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_every_cut_gives_the_same_calls(dialect, output, text, calls):
    for cut in range(len(output) + 1):
        assert run(dialect, [output[:cut], output[cut:]]) == (text, calls), f"cut at {cut}"
    assert run(dialect, list(output)) == (text, calls), "character by character"


def deltas(dialect, pieces):
    stream = ToolCallStream(DIALECTS[dialect], TOOLS)
    return [[type(e).__name__ for e in stream.feed(p)] for p in pieces]


def test_json_input_streams_while_it_is_written():
    pieces = [
        '<tool_call>\n{"name": "get_weather", "arguments": ',
        '{"city": "Pa',
        'ris", "days"',
        ": 3}}\n</tool_call>",
    ]
    assert deltas("hermes", pieces) == [
        ["ToolUseStart"],
        ["ToolInputDelta"],
        ["ToolInputDelta"],
        ["ToolInputDelta", "ToolUseEnd"],
    ]


def test_xml_arguments_stream_one_parameter_at_a_time():
    pieces = [
        "<tool_call>\n<function=get_weather>\n",
        "<parameter=city>\nParis\n</parameter>\n",
        "</function>\n</tool_call>",
    ]
    assert deltas("qwen3_coder", pieces) == [["ToolUseStart"], ["ToolInputDelta"], ["ToolInputDelta", "ToolUseEnd"]]


@pytest.mark.parametrize(
    "bad",
    [
        "<tool_call>{not json}</tool_call>",
        '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>',
        "<tool_call>just words</tool_call>",
        '<tool_call>{"name": "ge',
    ],
)
def test_unreadable_calls_come_back_as_text(bad):
    assert run("hermes", list(bad)) == (bad, [])
    assert run("hermes", [bad]) == (bad, [])


def test_a_call_cut_short_is_closed():
    _text, calls = run("hermes", ['<tool_call>{"name": "get_weather", "arguments": {"city": "Par'])
    assert calls == [("get_weather", {"city": "Par"})]


def test_a_call_that_breaks_midway_is_closed_there_and_the_rest_is_text():
    text, calls = run(
        "hermes", ['<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", days: 3}}</tool_call>']
    )
    assert calls == [("get_weather", {"city": "Paris"})]
    assert "days: 3" in text


@pytest.mark.parametrize(
    "body",
    [
        '{"name": "get_time", "arguments": {"zone": "CET",}}',  # trailing comma
        "{'name': 'get_time', 'arguments': {'zone': 'CET'}}",  # Python quotes
        '{"arguments": {"zone": "CET"}, "name": "get_time"}',  # arguments first
        '{"name": "get_time", "arguments": "{\\"zone\\": \\"CET\\"}"}',  # arguments as a string
    ],
)
def test_safely_repairable_calls_are_repaired(body):
    assert run("hermes", [f"<tool_call>{body}</tool_call>"]) == ("", [CET])


def test_one_call_when_parallel_use_is_disabled():
    both = CASES[1][1]
    assert run("hermes", [both], single=True)[1] == [PARIS]


def test_leading_dialects_leave_ordinary_answers_alone():
    assert run("llama3_json", ["The answer is {x}."]) == ("The answer is {x}.", [])
    assert run("pythonic_bare", list("See [1] below.")) == ("See [1] below.", [])


class Template:
    """Just what detection reads of a tokenizer."""

    def __init__(self, chat_template, **extra):
        self.chat_template = chat_template
        self.__dict__.update(extra)


# Each family's tell-tale phrase, as its chat template words it (paraphrased, not copied).
TEMPLATES = {
    "hermes": "{% if tools %}<tools>{{ tools }}</tools> return a json object in <tool_call></tool_call>{% endif %}",
    "qwen3_coder": "{% if tools %}...<tool_call>\n<function=example>\n<parameter=x>\n1\n</parameter>{% endif %}",
    "mistral": "{% if tools %}[AVAILABLE_TOOLS]{{ tools }}[/AVAILABLE_TOOLS]{% endif %}[TOOL_CALLS]",
    "llama3_json": '{% if tools %}Respond in the format {"name": function name, "parameters": dict}'
    "<|eot_id|>{% endif %}",
    "pythonic_bare": "{% if tools %}you MUST put it in the format of "
    "[func_name1(params_name1=params_value1)]{% endif %}",
    "pythonic": "{% if tools %}<|tool_list_start|>{{ tools }}<|tool_list_end|> <|tool_call_start|>{% endif %}",
    "generic": "{% for m in messages %}{{ m.content }}{% endfor %}",
}


@pytest.mark.parametrize("name", TEMPLATES)
def test_the_dialect_is_read_from_the_template(name):
    assert detect(Template(TEMPLATES[name], has_tool_calling=False)).name == name


def test_families_only_mlx_lm_knows_use_its_parser():
    def parse(text, tools=None):
        return {"name": "get_time", "arguments": {"zone": text.strip()}}

    tokenizer = Template(
        "{% if tools %}<|tool_call>...<tool_call|>{% endif %}",
        has_tool_calling=True,
        tool_call_start="<|tool_call>",
        tool_call_end="<tool_call|>",
        tool_parser=parse,
    )
    dialect = detect(tokenizer)
    stream = ToolCallStream(dialect, TOOLS)
    events = stream.feed("Now: <|tool_call> CET <tool_call|>") + stream.finish()
    assert [type(e).__name__ for e in events] == ["TextDelta", "ToolUseStart", "ToolInputDelta", "ToolUseEnd"]
    assert events[-1].input == {"zone": "CET"}


def test_parse_errors_inside_a_reader_come_back_as_text():
    """A name with a broken escape (JSON dialect) and a parser whose arguments are not JSON
    (mlx-lm fallback): text, not an exception in the generation loop."""
    bad_name = '<tool_call>{"name": "get\\x", "arguments": {}}</tool_call>'
    assert run("hermes", [bad_name]) == (bad_name, [])

    tokenizer = Template(
        "{% if tools %}<|tool_call>{% endif %}",
        has_tool_calling=True,
        tool_call_start="<|tool_call>",
        tool_call_end="<tool_call|>",
        tool_parser=lambda text, tools=None: {"name": "get_time", "arguments": "{oops"},
    )
    stream = ToolCallStream(detect(tokenizer), TOOLS)
    events = stream.feed("<|tool_call>x<tool_call|>") + stream.finish()
    assert [(type(e).__name__, e.text) for e in events] == [("TextDelta", "<|tool_call>x<tool_call|>")]
