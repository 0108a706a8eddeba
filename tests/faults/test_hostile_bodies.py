"""The hostile-body corpus against the real server: each gets its exact 4xx naming the JSON
path, and the server goes on serving; HTTP-layer errors carry our envelope and a request id."""

from __future__ import annotations

import json
import socket

import httpx2 as httpx
import pytest
from faults.hostile_bodies import BASE, HOSTILE, MESSAGES, SERVED

from pensieve_core import DEFAULT_API_KEY

KEY = {"x-api-key": DEFAULT_API_KEY, "content-type": "application/json"}


@pytest.mark.parametrize("name, route, body, status, error_type, path", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_body_gets_its_4xx_and_the_server_still_serves(server, name, route, body, status, error_type, path):
    r = httpx.post(server.url + route, content=body, headers=KEY, timeout=60)
    assert r.status_code == status, r.text[:300]
    error = r.json()["error"]
    assert error["type"] == error_type
    if path is not None:
        assert f"at `{path}" in error["message"], error["message"][:300]
    assert r.headers["request-id"].startswith("req_")
    ok = httpx.post(server.url + MESSAGES, json=BASE, headers=KEY, timeout=60)
    assert ok.status_code == 200, ok.text[:300]


@pytest.mark.parametrize("name, body", SERVED, ids=[s[0] for s in SERVED])
def test_odd_but_valid_values_are_served(server, name, body):
    r = httpx.post(server.url + MESSAGES, content=body, headers=KEY, timeout=60)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["stop_reason"] in ("end_turn", "max_tokens")


RAW = [
    ("bad content-length", b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n", 400),
    ("headers too large", b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    (
        "unsupported transfer-encoding",
        b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
    ),
]


@pytest.mark.parametrize("name, request_bytes, status", RAW, ids=[r[0] for r in RAW])
def test_http_layer_errors_carry_the_envelope_and_a_request_id(server, name, request_bytes, status):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    assert lines[0].split()[1] == str(status), lines[0]
    headers = dict(line.split(": ", 1) for line in lines[1:])
    headers = {k.lower(): v for k, v in headers.items()}
    assert headers["request-id"].startswith("req_")
    envelope = json.loads(body)
    assert envelope["type"] == "error" and envelope["error"]["type"] in ("invalid_request_error", "request_too_large")
    assert envelope["request_id"] == headers["request-id"]
