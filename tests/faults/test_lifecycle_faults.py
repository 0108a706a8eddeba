"""Start-up, shutdown and logging faults on the real `pensieve start` process: a taken port,
a log pipe whose reader is gone, signals, streams cut by the shutdown timeout, client
disconnects, and secrets that must never reach a log in either renderer."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2 as httpx
import pytest
from server_process import ServerProcess, free_port, isolated_env, sse_events

KEY = "sk-SECRET-MARKER-1234"
MARKER = "BODY-MARKER-5678"
CUT_AFTER_S = 1.5  # shutdown_timeout for the tests that cut streams
SLACK_S = 3.0  # closing the models, threads and interpreter once the timeout has passed


def pensieve(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pensieve_cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def message(max_tokens: int, *, stream: bool = False) -> dict:
    return {
        "model": "m",
        "max_tokens": max_tokens,
        "stream": stream,
        "messages": [{"role": "user", "content": f"{MARKER} tell me a story"}],
    }


def read_until_delta(chunks) -> str:
    text = ""
    while "content_block_delta" not in text:
        text += next(chunks)
    return text


def read_rest(chunks, within_s: float) -> str:
    """The rest of a stream, but no longer than within_s: pings could keep a hung one open."""
    deadline, text = time.monotonic() + within_s, ""
    for chunk in chunks:
        text += chunk
        if time.monotonic() > deadline:
            break
    return text


def wait_health(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited with {proc.returncode}"
        try:
            httpx.get(url + "/health", timeout=2).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("server not ready")


def test_foreground_start_on_a_taken_port_is_one_line_and_exit_1(tiny_model_dir, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = pensieve("start", "--model", str(tiny_model_dir), "--port", str(port), env=isolated_env(tmp_path))
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"pensieve: cannot listen on 127.0.0.1:{port}: the port is in use (choose another with --port)"
    )
    # Nothing claimed to serve, and no traceback: the bind comes before the model loads.
    assert "serving" not in result.stderr and "listening" not in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 2


class _OtherServer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"status": "ok"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args) -> None:
        pass


def test_daemon_start_on_a_port_another_server_answers_fails_and_leaves_no_pid_file(tiny_model_dir, tmp_path):
    other = ThreadingHTTPServer(("127.0.0.1", 0), _OtherServer)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    env = isolated_env(tmp_path)
    env["PENSIEVE_PORT"] = str(other.server_address[1])
    try:
        result = pensieve("start", "--daemon", "--model", str(tiny_model_dir), env=env)
    finally:
        other.shutdown()
        other.server_close()
    # Before: /health answered by the other server was taken for ours ("running (pid N)", exit 0).
    assert result.returncode == 1, result.stdout + result.stderr
    assert "pensieve running" not in result.stdout
    assert "the port is in use" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "pensieve" / "pensieve.pid").exists()


@pytest.mark.parametrize(
    "signals",
    [[signal.SIGINT], [signal.SIGTERM], [signal.SIGINT, signal.SIGINT]],
    ids=["sigint", "sigterm", "second-sigint"],
)
def test_shutdown_with_the_log_reader_gone_ends_in_time(tiny_model_dir, tmp_path, signals):
    """`pensieve start 2>&1 | tee log`, then Ctrl-C: tee dies first and the log pipe is closed.
    The stream still running is cut at shutdown_timeout with one overloaded_error event; a
    second signal ends the process at once."""
    forced = len(signals) > 1
    timeout_s = 60.0 if forced else CUT_AFTER_S
    within_s = SLACK_S if forced else timeout_s + SLACK_S  # from the first signal to the exit
    port = free_port()
    env = isolated_env(tmp_path)
    env["PENSIEVE_SHUTDOWN_TIMEOUT"] = str(timeout_s)
    tee = subprocess.Popen(["tee", str(tmp_path / "log")], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    server = subprocess.Popen(
        [sys.executable, "-m", "pensieve_cli", "start", "--model", str(tiny_model_dir), "--port", str(port)],
        env=env,
        stdout=tee.stdin,
        stderr=subprocess.STDOUT,
    )
    tee.stdin.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_health(url, server)
        with httpx.Client(timeout=30) as client:
            headers = {"x-api-key": "pensieve-local-key"}
            with client.stream("POST", url + "/v1/messages", headers=headers, json=message(3000, stream=True)) as r:
                chunks = r.iter_text()
                raw = read_until_delta(chunks)
                tee.kill()
                tee.wait()
                sent = time.monotonic()
                for sig in signals:
                    server.send_signal(sig)
                    time.sleep(0.3)
                try:
                    raw += read_rest(chunks, within_s)
                except httpx.TransportError:
                    assert forced  # a forced exit drops the connection; a graceful one never does
        code = server.wait(timeout=within_s + 5)
        took = time.monotonic() - sent
    finally:
        for proc in (server, tee):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert took < within_s, took
    if forced:
        assert code == 1
        return
    assert code == 0
    events = sse_events(raw)
    assert [e["type"] for e in events].count("error") == 1
    assert events[-1] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "the server is shutting down"},
    }


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_logs_carry_no_secret_and_a_disconnect_is_one_line(tiny_model_dir, tmp_path, log_format):
    """A recognisable key and body marker go through success, 4xx (401, 400), 5xx (529 with the
    queue full and while draining, when the listener is not closed first), a disconnect
    mid-stream and a shutdown that cuts a stream; the log never shows either, and the
    disconnect is one info line with no traceback. (No live request gives an honest 500: the
    unhandled-error path is covered by pensieve-cli's test_logging.)"""
    port = free_port()
    env = isolated_env(tmp_path)
    env.update(
        PENSIEVE_API_KEY=KEY,
        PENSIEVE_LOG_FORMAT=log_format,
        PENSIEVE_SHUTDOWN_TIMEOUT="1",
        PENSIEVE_MAX_CONCURRENT_SEQUENCES="1",
        PENSIEVE_MAX_QUEUED_REQUESTS="0",
    )
    server = ServerProcess(["--model", str(tiny_model_dir), "--port", str(port)], env, port, tmp_path / "server.log")
    try:
        server.wait_ready()
        auth = {"authorization": f"Bearer {KEY}", "x-note": MARKER}
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.post("/v1/messages", headers=auth, json=message(4)).status_code == 200
            wrong = {"x-api-key": f"{KEY}-WRONG", "x-note": MARKER}
            assert client.post("/v1/messages", headers=wrong, json=message(4)).status_code == 401
            bad = {**message(4), "max_tokens": MARKER}
            assert client.post("/v1/messages", headers=auth, json=bad).status_code == 400
            with client.stream("POST", "/v1/messages", headers=auth, json=message(3000, stream=True)) as r:
                gone = r.headers["request-id"]
                chunks = r.iter_text()  # held: a dropped iterator closes the response
                read_until_delta(chunks)
                # One sequence at a time and no queue: a second request meanwhile is a 529.
                assert client.post("/v1/messages", headers=auth, json=message(4)).status_code == 529
            deadline = time.monotonic() + 10
            while "client_disconnected" not in server.output():
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.1)
            while True:  # the disconnected stream may hold its one slot for a moment longer
                r = client.send(
                    client.build_request("POST", "/v1/messages", headers=auth, json=message(3000, stream=True)),
                    stream=True,
                )
                if r.status_code != 529:
                    break
                r.close()
                assert time.monotonic() < deadline
                time.sleep(0.1)
            try:
                chunks = r.iter_text()
                read_until_delta(chunks)
                server.proc.send_signal(signal.SIGTERM)
                time.sleep(0.3)
                try:
                    late = client.post("/v1/messages", headers=auth, json=message(4))
                    assert late.status_code == 529 and late.json()["error"]["type"] == "overloaded_error"
                except httpx.TransportError:
                    pass  # the listener may already be closed
                rest = read_rest(chunks, 1 + SLACK_S)
            finally:
                r.close()
        assert '"overloaded_error"' in rest
        assert server.wait_exit(timeout=15) == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.wait_exit()
    log = server.output()
    assert KEY not in log and MARKER not in log
    assert "Traceback" not in log and "unhandled_error" not in log
    lines = [line for line in log.splitlines() if "client_disconnected" in line]
    assert len(lines) == 1 and gone in lines[0] and "info" in lines[0], lines
    structured = [line for line in log.splitlines() if line.startswith("{")]
    assert (len(structured) > 5) if log_format == "json" else not structured
