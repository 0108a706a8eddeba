"""Hardening of the live server process: Host, Origin, body limits and types, TLS, SIGTERM."""

import signal
import ssl
import subprocess
import time

import httpx2 as httpx
import pytest
from server_process import ServerProcess, free_port, isolated_env, sse_events

KEY = {"x-api-key": "pensieve-local-key"}
BODY = {"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}


def test_foreign_host_header_is_refused(server):
    r = httpx.post(server.url + "/v1/messages", headers={**KEY, "host": "evil.example"}, json=BODY, timeout=10)
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    for host in ("localhost:1234", "127.0.0.1", "[::1]:80"):
        assert httpx.get(server.url + "/health", headers={"host": host}, timeout=10).status_code == 200


def test_foreign_origin_is_refused_without_cors_headers(server):
    r = httpx.post(
        server.url + "/v1/messages", headers={**KEY, "origin": "https://evil.example"}, json=BODY, timeout=10
    )
    assert r.status_code == 403
    assert "access-control-allow-origin" not in r.headers
    pre = httpx.options(
        server.url + "/v1/messages",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        timeout=10,
    )
    assert pre.status_code == 403 and "access-control-allow-origin" not in pre.headers


def test_body_over_32_mb_is_413(server):
    big = b'{"model":"tiny","max_tokens":1,"messages":[{"role":"user","content":"' + b"a" * (33 * 1024 * 1024) + b'"}]}'
    r = httpx.post(
        server.url + "/v1/messages", headers={**KEY, "content-type": "application/json"}, content=big, timeout=60
    )
    assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"


def test_invalid_utf8_and_json_and_content_type_are_400(server):
    headers = {**KEY, "content-type": "application/json"}
    bad_utf8 = b'{"model":"tiny","max_tokens":1,"messages":[{"role":"user","content":"\xff\xfe"}]}'
    for body in (bad_utf8, b"{not json", b""):
        r = httpx.post(server.url + "/v1/messages", headers=headers, content=body, timeout=10)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", body
    r = httpx.post(
        server.url + "/v1/messages", headers={**KEY, "content-type": "text/plain"}, content=b"{}", timeout=10
    )
    assert r.status_code == 400 and "content-type" in r.json()["error"]["message"]


@pytest.mark.parametrize("name", ["../../etc", "/tmp", "~/.ssh", "owner/repo"])
def test_path_like_model_names_are_404(server, name):
    r = httpx.post(server.url + "/v1/messages", headers=KEY, json={**BODY, "model": name}, timeout=10)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


def test_sigterm_during_a_stream_lets_it_finish(tiny_model_dir, tmp_path):
    port = free_port()
    proc = ServerProcess(
        ["--model", str(tiny_model_dir), "--port", str(port)], isolated_env(tmp_path), port, tmp_path / "log"
    )
    proc.wait_ready()
    body = {**BODY, "max_tokens": 200, "temperature": 0, "stream": True}
    with (
        httpx.Client(timeout=120) as client,
        client.stream("POST", proc.url + "/v1/messages", headers=KEY, json=body) as response,
    ):
        chunks = response.iter_text()
        first = next(chunks)
        while "content_block_delta" not in first:
            first += next(chunks)
        proc.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # Shutting down: a new request is refused (connection closed, or 529 while draining).
        try:
            late = httpx.get(proc.url + "/v1/models", headers=KEY, timeout=5)
            assert late.status_code == 529 and late.json()["error"]["type"] == "overloaded_error"
        except httpx.TransportError:
            pass
        rest = "".join(chunks)
    events = sse_events(first + rest)
    assert events[-1]["type"] == "message_stop"
    assert events[-2]["usage"]["output_tokens"] == 200
    assert proc.wait_exit() == 0, proc.output()


def test_tls_with_certfile_and_keyfile(tiny_model_dir, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    env = isolated_env(tmp_path)
    env.update(PENSIEVE_CERTFILE=str(cert), PENSIEVE_KEYFILE=str(key))
    proc = ServerProcess(["--model", str(tiny_model_dir), "--port", str(port)], env, port, tmp_path / "log")
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"https://127.0.0.1:{port}/health", verify=trust, timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.proc.poll() is None, proc.output()
                time.sleep(0.3)
        assert r.status_code == 200 and r.json()["status"] == "ok"
    finally:
        assert proc.stop() == 0, proc.output()
