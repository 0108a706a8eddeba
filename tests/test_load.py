"""The server under load: parallel requests batch together and answer as they would alone;
a crowd of clients that leave mid-stream leaves nothing running."""

import asyncio
import time

import httpx2 as httpx
import pytest
from server_process import ServerProcess, free_port, isolated_env

KEY = {"x-api-key": "pensieve-local-key"}


def body(text, max_tokens=20, stream=False):
    return {
        "model": "tiny",
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    }


def gauge(server, name) -> float:
    text = httpx.get(server.url + "/metrics", headers=KEY, timeout=10).text
    return float(next(line for line in text.splitlines() if line.startswith(name + " ")).split()[1])


def test_eight_parallel_greedy_requests_match_one_by_one(server):
    bodies = [body(f"Eight at once, request {i}") for i in range(8)]
    alone = [httpx.post(server.url + "/v1/messages", headers=KEY, json=b, timeout=60).json() for b in bodies]

    async def together():
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(
                *(client.post(server.url + "/v1/messages", headers=KEY, json=b) for b in bodies)
            )

    batched = [r.json() for r in asyncio.run(together())]
    assert [m["content"] for m in batched] == [m["content"] for m in alone]
    assert len({m["content"][0]["text"] for m in alone}) > 1


@pytest.fixture
def roomy_server(tiny_model_dir, tmp_path):
    env = isolated_env(tmp_path)
    env["PENSIEVE_MAX_QUEUED_REQUESTS"] = "256"
    port = free_port()
    proc = ServerProcess(["--model", str(tiny_model_dir), "--port", str(port)], env, port, tmp_path / "log")
    proc.wait_ready()
    yield proc
    assert proc.stop() == 0, proc.output()


def test_two_hundred_abandoned_streams_leave_the_engine_idle(roomy_server):
    url = roomy_server.url + "/v1/messages"

    async def start_and_leave(client, i):
        async with client.stream("POST", url, headers=KEY, json=body(f"Abandoned stream {i}", 3000, True)) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("event: message_start"):
                    return  # leaving the block closes the connection

    async def crowd():
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            await asyncio.gather(*(start_and_leave(client, i) for i in range(200)))

    asyncio.run(crowd())
    left = time.monotonic()
    while gauge(roomy_server, "pensieve_active_generations") and time.monotonic() - left < 10:
        time.sleep(0.02)
    idle_after = time.monotonic() - left
    busy = gauge(roomy_server, "pensieve_active_generations")
    assert busy == 0, f"{busy:.0f} generations still running 10 s later; server log:\n{roomy_server.output()[-4000:]}"
    assert idle_after < 1.0, f"engine busy {idle_after:.2f} s after the last client left"
    r = httpx.post(url, headers=KEY, json=body("And now a real one", 5), timeout=30)
    assert r.status_code == 200 and r.json()["usage"]["output_tokens"] == 5
