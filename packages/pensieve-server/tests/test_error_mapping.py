"""Every class of the error tree reaches HTTP with its own status and type, on the streamed and
the non-streamed path: named by an engine's Failed event (before or after generation began),
or raised where it belongs (guards, routes, the engine, the server's own failures)."""

import msgspec
import pytest
from starlette.testclient import TestClient

from pensieve_core import Failed, ModelCard, Settings, Started, TextDelta, errors
from pensieve_server import create_app

AUTH = {"x-api-key": "test-key"}
BODY = {"model": "tiny", "max_tokens": 6, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}
TREE = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, errors.PensieveError)]


def make(cls: type[errors.PensieveError]) -> errors.PensieveError:
    return cls(9, 4) if cls is errors.PromptTooLongError else cls(f"{cls.__name__} happened")


def sse(text: str) -> list[dict]:
    return [msgspec.json.decode(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def assert_envelope(r, exc: errors.PensieveError) -> None:
    assert (r.status_code, r.json()["error"]["type"]) == (exc.status, exc.error_type)
    assert r.json()["error"]["message"] == exc.message and r.json()["request_id"] == r.headers["request-id"]


class Scripted:
    """An engine whose generation follows a script: events, and exceptions raised in their place."""

    model = ModelCard(id="scripted", source="test", context_length=4096)

    def __init__(self) -> None:
        self.script: list[object] = []

    async def generate(self, request):
        for item in self.script:
            if isinstance(item, BaseException):
                raise item
            yield item

    async def count_tokens(self, request) -> int:
        return 1

    async def aclose(self) -> None:
        pass


@pytest.fixture
def scripted():
    engine = Scripted()
    app = create_app(engine, Settings(api_key="test-key", max_body_bytes=2000))
    with TestClient(app, base_url="http://localhost") as c:
        c.engine, c.app = engine, app
        yield c


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("cls", TREE, ids=lambda c: c.__name__)
def test_a_failed_first_event_answers_its_class_status_and_type(scripted, cls, stream):
    exc = make(cls)
    scripted.engine.script = [Failed.of(exc)]
    assert_envelope(scripted.post("/v1/messages", json={**BODY, "stream": stream}, headers=AUTH), exc)


@pytest.mark.parametrize("cls", TREE, ids=lambda c: c.__name__)
def test_a_failure_after_generation_began_keeps_its_class_on_both_paths(scripted, cls):
    exc = make(cls)
    scripted.engine.script = [Started(prompt_tokens=3), TextDelta(text="so "), Failed.of(exc)]
    assert_envelope(scripted.post("/v1/messages", json=BODY, headers=AUTH), exc)
    r = scripted.post("/v1/messages", json={**BODY, "stream": True}, headers=AUTH)
    assert r.status_code == 200  # sent before the failure: the type goes in-band
    assert sse(r.text)[-1] == {"type": "error", "error": {"type": exc.error_type, "message": exc.message}}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_guards_raise_tree_errors(client, stream):
    body = {**BODY, "stream": stream}
    cases = [
        (
            client.post("/v1/messages", json=body),
            errors.AuthenticationError("missing API key: send it in the x-api-key header or as Authorization: Bearer"),
        ),
        (
            client.post("/v1/messages", json=body, headers={"x-api-key": "nope"}),
            errors.AuthenticationError("invalid x-api-key"),
        ),
        (
            client.post("/v1/messages", json=body, headers={**AUTH, "host": "evil.example"}),
            errors.PermissionDeniedError("this Host header is not allowed"),
        ),
        (
            client.post("/v1/messages", json=body, headers={**AUTH, "origin": "https://evil.example"}),
            errors.PermissionDeniedError("cross-origin requests from https://evil.example are not allowed"),
        ),
        (
            client.post(
                "/v1/messages", content=msgspec.json.encode(body), headers={**AUTH, "content-type": "text/plain"}
            ),
            errors.InvalidRequestError("content-type must be application/json, got 'text/plain'"),
        ),
    ]
    for r, exc in cases:
        assert_envelope(r, exc)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_body_past_the_limit_is_request_too_large(scripted, stream):
    r = scripted.post("/v1/messages", json={**BODY, "stream": stream, "system": "x" * 3000}, headers=AUTH)
    assert_envelope(r, errors.RequestTooLargeError("request body exceeds the 2000-byte limit"))


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_routes_and_the_engine_raise_tree_errors(client, stream):
    body = {**BODY, "stream": stream}
    r = client.post("/v1/messages", json={**body, "max_tokens": "many"}, headers=AUTH)
    assert (r.status_code, r.json()["error"]["type"]) == (400, "invalid_request_error")
    r = client.post(
        "/v1/messages", json={**body, "messages": [{"role": "user", "content": "word " * 5000}]}, headers=AUTH
    )
    assert (r.status_code, r.json()["error"]["type"]) == (400, "invalid_request_error")
    assert r.json()["error"]["message"].startswith("prompt is too long: ")
    r = client.post("/v1/messages", json={**body, "model": "someone/else"}, headers=AUTH)
    assert (r.status_code, r.json()["error"]["type"]) == (404, "not_found_error")


def test_starlette_statuses_map_through_the_tree(client):
    assert_envelope(
        client.post("/v1/nothing", json=BODY, headers=AUTH), errors.NotFoundError("no such route: POST /v1/nothing")
    )
    r = client.get("/v1/messages", headers=AUTH)
    # 405 is not in the tree: the client's mistake, with HTTP's own status kept.
    assert (r.status_code, r.json()["error"]["type"]) == (405, "invalid_request_error")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_an_unexpected_exception_is_an_api_error(scripted, stream):
    scripted.engine.script = [RuntimeError("boom")]
    r = scripted.post("/v1/messages", json={**BODY, "stream": stream}, headers=AUTH)
    assert_envelope(r, errors.ApiError("internal server error"))


def test_an_unexpected_exception_after_generation_began_is_an_api_error_on_both_paths(scripted):
    scripted.engine.script = [Started(prompt_tokens=3), TextDelta(text="so "), RuntimeError("boom")]
    assert_envelope(scripted.post("/v1/messages", json=BODY, headers=AUTH), errors.ApiError("internal server error"))
    r = scripted.post("/v1/messages", json={**BODY, "stream": True}, headers=AUTH)
    assert sse(r.text)[-1] == {"type": "error", "error": {"type": "api_error", "message": "generation failed: boom"}}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_draining_is_a_529_overloaded_error_that_sdks_retry(scripted, stream):
    scripted.app.state.lifecycle.draining = True
    r = scripted.post("/v1/messages", json={**BODY, "stream": stream}, headers=AUTH)
    assert_envelope(r, errors.OverloadedError("the server is shutting down"))
    assert r.headers["retry-after"] == "1" and r.headers["retry-after-ms"] == "1000"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_full_queue_is_a_529_overloaded_error(scripted, stream):
    scripted.app.state.metrics.in_flight = 1_000
    r = scripted.post("/v1/messages", json={**BODY, "stream": stream}, headers=AUTH)
    assert (r.status_code, r.json()["error"]["type"]) == (529, "overloaded_error")
    assert r.headers["retry-after"] == "1"
