import os
import pathlib
import socket
import sys

import pytest
from starlette.testclient import TestClient

from pensieve_core import Settings
from pensieve_server import create_app

AUTH = {"x-api-key": "test-key"}
BODY = {"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("name", ["../../etc", "/tmp", "/etc/passwd", "~/.ssh/id_rsa", "evil/repo", "x.gguf"])
def test_path_like_model_names_touch_no_file_and_no_network(client, monkeypatch, name):
    touched = []

    def refuse(*args, **kwargs):
        touched.append(args)
        raise AssertionError(f"file or network access: {args!r}")

    for target, attr in [
        (pathlib.Path, "stat"),
        (pathlib.Path, "exists"),
        (os, "stat"),
        (os, "listdir"),
        (socket, "getaddrinfo"),
        (socket, "create_connection"),
    ]:
        monkeypatch.setattr(target, attr, refuse)
    opened = []

    def audit(event, args):
        if event in ("open", "socket.connect", "socket.getaddrinfo") and name.strip("~/.") in str(args):
            opened.append((event, args))

    sys.addaudithook(audit)
    r = client.post("/v1/messages", json={**BODY, "model": name}, headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    assert touched == [] and opened == []


def test_allowed_origin_gets_cors_headers(engine):
    settings = Settings(api_key="test-key", allowed_origins=["https://app.example"])
    with TestClient(create_app(engine, settings), base_url="http://localhost") as c:
        r = c.get("/v1/models", headers={**AUTH, "origin": "https://app.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
        pre = c.options(
            "/v1/messages", headers={"origin": "https://app.example", "access-control-request-method": "POST"}
        )
        assert pre.status_code == 204 and "POST" in pre.headers["access-control-allow-methods"]
        assert c.get("/v1/models", headers={**AUTH, "origin": "https://other.example"}).status_code == 403


def test_configured_host_is_accepted(engine):
    settings = Settings(api_key="test-key", allowed_hosts=["pensieve.lan"])
    with TestClient(create_app(engine, settings), base_url="http://pensieve.lan:7777") as c:
        assert c.get("/v1/models", headers=AUTH).status_code == 200
    with TestClient(create_app(engine, settings), base_url="http://other.lan") as c:
        assert c.get("/v1/models", headers=AUTH).status_code == 403


SANDBOX_ESCAPE = (
    "{{ self.__init__.__globals__.__builtins__.__import__('os').system('touch ESCAPED') }}"
    "{{ ''.__class__.__mro__[1].__subclasses__() }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
)


def test_sandbox_escape_in_a_chat_template_errors_instead_of_executing(tmp_path, monkeypatch):
    from pensieve_inference import MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference
    from pensieve_model_support.testing import build_tiny_model

    monkeypatch.chdir(tmp_path)
    path = build_tiny_model(tmp_path / "evil", chat_template=SANDBOX_ESCAPE)
    engine = MLXEngine.load_sync(resolve_reference(str(path)), HuggingFaceHub())
    try:
        with TestClient(create_app(engine, Settings(api_key="test-key")), base_url="http://localhost") as c:
            r = c.post("/v1/messages", json=BODY, headers=AUTH)
            assert r.status_code == 400
            assert "chat template" in r.json()["error"]["message"]
    finally:
        engine.worker.stop()
    assert not (tmp_path / "ESCAPED").exists()
