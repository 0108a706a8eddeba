import pytest

from pensieve_inference import StopSequenceMatcher


def run(stops, pieces):
    m = StopSequenceMatcher(stops)
    out = "".join(m.feed(p) for p in pieces)
    if m.matched is None:
        out += m.flush()
    return out, m.matched


def test_no_stops_passes_text_through():
    assert run(None, ["a", "b"]) == ("ab", None)


@pytest.mark.parametrize("pieces", [["hello END more"], ["hello E", "ND more"], list("hello END more")])
def test_stop_found_across_any_split(pieces):
    assert run(["END"], pieces) == ("hello ", "END")


def test_false_start_is_released():
    assert run(["END"], ["an E", "x", "it"]) == ("an Exit", None)


def test_earliest_of_several_stops_wins():
    assert run(["zz", "b"], ["a", "bzz"]) == ("a", "b")


def test_held_text_is_never_emitted_early():
    m = StopSequenceMatcher(["</answer>"])
    assert m.feed("42</ans") == "42"
    assert m.feed("wer>") == ""
    assert m.matched == "</answer>"
