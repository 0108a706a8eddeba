"""A client that goes away stops its generation: the engine is idle again at once and the
next request is served."""

import time

import httpx2 as httpx
import pytest

KEY = {"x-api-key": "pensieve-local-key"}
LONG = {"model": "tiny", "max_tokens": 3000, "temperature": 0, "messages": [{"role": "user", "content": "Go on"}]}
COUNT = {"model": "tiny", "messages": [{"role": "user", "content": "Go on"}]}


def gauge(server, name) -> float:
    text = httpx.get(server.url + "/metrics", headers=KEY, timeout=10).text
    return float(next(line for line in text.splitlines() if line.startswith(name + " ")).split()[1])


def abandon(server, stream):
    with httpx.Client(timeout=httpx.Timeout(10, read=1.0)) as client:
        if stream:
            with client.stream("POST", server.url + "/v1/messages", headers=KEY, json={**LONG, "stream": True}) as r:
                for chunk in r.iter_bytes():
                    if b"content_block_delta" in chunk:
                        return  # leaving the block closes the connection mid-stream
        else:
            with pytest.raises(httpx.ReadTimeout):
                client.post(server.url + "/v1/messages", headers=KEY, json=LONG)


@pytest.mark.parametrize("stream", [False, True])
def test_abandoned_request_stops_generating(server, stream):
    abandon(server, stream)
    left = time.monotonic()
    while gauge(server, "pensieve_active_generations") and time.monotonic() - left < 5:
        time.sleep(0.05)
    # 3,000 tokens would take ~40 s here; the engine is idle about as soon as the client left.
    assert gauge(server, "pensieve_active_generations") == 0
    assert time.monotonic() - left < 1.5
    assert gauge(server, "pensieve_requests_in_flight") == 0
    started = time.monotonic()
    r = httpx.post(server.url + "/v1/messages", headers=KEY, json={**LONG, "max_tokens": 2}, timeout=30)
    assert r.status_code == 200 and time.monotonic() - started < 5


def test_full_queue_answers_529_with_retry_after(tiny_model_dir, tmp_path):
    import threading

    from server_process import ServerProcess, free_port, isolated_env

    env = isolated_env(tmp_path)
    env["PENSIEVE_MAX_CONCURRENT_SEQUENCES"] = "1"
    env["PENSIEVE_MAX_QUEUED_REQUESTS"] = "1"
    port = free_port()
    proc = ServerProcess(["--model", str(tiny_model_dir), "--port", str(port)], env, port, tmp_path / "log")
    proc.wait_ready()
    try:
        # One request decoding, one waiting for its slot: the queue is full. Two different
        # bodies: identical ones would be one generation (a resend joins the first).
        busy = [
            threading.Thread(
                target=lambda i=i: httpx.post(
                    proc.url + "/v1/messages", headers=KEY, json={**LONG, "max_tokens": 200 + i}, timeout=60
                )
            )
            for i in range(2)
        ]
        for thread in busy:
            thread.start()
        deadline = time.monotonic() + 10
        while gauge(proc, "pensieve_requests_in_flight") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        r = httpx.post(proc.url + "/v1/messages", headers=KEY, json={**LONG, "max_tokens": 2}, timeout=10)
        assert r.status_code == 529 and r.json()["error"]["type"] == "overloaded_error"
        assert r.headers["retry-after"] == "1" and r.headers["retry-after-ms"] == "1000"
        # count_tokens renders and tokenizes too: it is inside the same cap.
        counted = httpx.post(proc.url + "/v1/messages/count_tokens", headers=KEY, json=COUNT, timeout=10)
        assert counted.status_code == 529 and counted.json()["error"]["type"] == "overloaded_error"
        for thread in busy:
            thread.join()
        assert (
            httpx.post(proc.url + "/v1/messages", headers=KEY, json={**LONG, "max_tokens": 2}, timeout=30).status_code
            == 200
        )
        assert (
            httpx.post(proc.url + "/v1/messages/count_tokens", headers=KEY, json=COUNT, timeout=30).status_code == 200
        )
    finally:
        assert proc.stop() == 0, proc.output()
