"""Errors Hypercorn's h11 layer answers itself carry our envelope and a request id once
install_http_errors() ran (serve.py calls it); count_tokens has its own, smaller body cap."""

import asyncio
import json
import socket
import threading

import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

from pensieve_api_models.limits import COUNT_TOKENS_MAX_BODY_BYTES
from pensieve_server.http_errors import install_http_errors

AUTH = {"x-api-key": "test-key", "content-type": "application/json"}


async def _app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def hypercorn_port():
    install_http_errors()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = config.errorlog = None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(_app, config, shutdown_trigger=stop.wait),))
    thread.start()
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            threading.Event().wait(0.05)
    yield port
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    loop.close()


def _exchange(port: int, request: bytes) -> tuple[int, dict, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
    ],
)
def test_an_h11_level_error_is_an_envelope_with_a_request_id(hypercorn_port, request_bytes, status):
    got, headers, body = _exchange(hypercorn_port, request_bytes)
    assert got == status
    assert headers["content-type"] == "application/json" and headers["request-id"].startswith("req_")
    envelope = json.loads(body)
    assert envelope["type"] == "error" and envelope["error"]["type"] == "invalid_request_error"
    assert envelope["error"]["message"] and envelope["request_id"] == headers["request-id"]


def test_a_good_request_is_still_served(hypercorn_port):
    got, _, body = _exchange(hypercorn_port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert got == 200 and b"ok" in body


def test_count_tokens_has_a_smaller_body_cap_than_messages(client):
    body = json.dumps(
        {"model": "tiny", "messages": [{"role": "user", "content": "w " * (COUNT_TOKENS_MAX_BODY_BYTES // 2)}]}
    )
    r = client.post("/v1/messages/count_tokens", content=body, headers=AUTH)
    assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"
    assert str(COUNT_TOKENS_MAX_BODY_BYTES) in r.json()["error"]["message"]
    small = client.post(
        "/v1/messages/count_tokens",
        json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}]},
        headers=AUTH,
    )
    assert small.status_code == 200


def test_a_tool_schema_the_grammar_cannot_build_is_logged_without_its_content(tmp_path):
    import structlog
    from starlette.testclient import TestClient

    from pensieve_core import Settings
    from pensieve_inference import MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference
    from pensieve_model_support.testing import TOOL_CHATML_TEMPLATE, build_tiny_model
    from pensieve_server import create_app

    path = build_tiny_model(tmp_path / "tools", tool_tokens=True, chat_template=TOOL_CHATML_TEMPLATE)
    engine = MLXEngine.load_sync(resolve_reference(str(path)), HuggingFaceHub())
    schema = {"type": "object", "properties": {"city": {"type": "string", "pattern": "USER_SECRET(((("}}}
    body = {
        "model": "t",
        "max_tokens": 2,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "get_weather", "input_schema": schema}],
        "tool_choice": {"type": "any"},
    }
    try:
        with (
            structlog.testing.capture_logs() as logs,
            TestClient(create_app(engine, Settings(api_key="test-key")), base_url="http://localhost") as c,
        ):
            assert c.post("/v1/messages", json=body, headers=AUTH).status_code == 200
    finally:
        engine.worker.stop()
    (warning,) = [e for e in logs if e["event"] == "tool_schema_not_constrained"]
    assert warning["tool"] == "get_weather" and warning["tool_index"] == 0
    assert "USER_SECRET" not in repr(logs)
