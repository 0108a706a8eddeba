"""One model across two ranks on this machine (`pensieve start --hostfile`, MLX's ring backend
over 127.0.0.1): the real server process as rank 0 and its follower process as rank 1, against
the one-process server on the same weights."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest
from server_process import ServerProcess, free_port, isolated_env, sse_events

from pensieve_model_support.testing import TOOL_CHATML_TEMPLATE, build_tiny_model

KEY = {"x-api-key": "pensieve-local-key", "anthropic-version": "2023-06-01"}
WEATHER = {
    "name": "get_weather",
    "description": "The weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
SYSTEM = "You are a careful assistant. " * 12


def hostfile(home: Path, ranks: int) -> Path:
    path = home / "hosts.json"
    path.write_text(json.dumps({"hosts": [{"ssh": "127.0.0.1"}] * ranks}))
    return path


def serve(tmp_path_factory, model_dir: Path, name: str, *, ranks: int = 1, **env) -> ServerProcess:
    home = tmp_path_factory.mktemp(name)
    port = free_port()
    environ = isolated_env(home)
    environ.update({f"PENSIEVE_{k.upper()}": str(v) for k, v in env.items()})
    args = ["--model", str(model_dir), "--port", str(port)]
    if ranks > 1:
        args += ["--hostfile", str(hostfile(home, ranks))]
    proc = ServerProcess(args, environ, port, home / "server.log")
    proc.wait_ready()
    return proc


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """Random weights with tool tokens: a forced call's grammar masks what the ranks sample."""
    return build_tiny_model(tmp_path_factory.mktemp("ranked"), chat_template=TOOL_CHATML_TEMPLATE, tool_tokens=True)


@pytest.fixture(scope="module")
def one_process(model_dir, tmp_path_factory):
    proc = serve(tmp_path_factory, model_dir, "one")
    yield proc
    assert proc.stop() == 0, proc.output()


@pytest.fixture(scope="module")
def two_ranks(model_dir, tmp_path_factory):
    proc = serve(tmp_path_factory, model_dir, "two", ranks=2)
    yield proc
    assert proc.stop() == 0, proc.output()


def bodies() -> list[dict]:
    """Eight different requests: plain, forced and offered tool calls, a stop sequence, a long
    prompt (through the prefill lane), and a system prompt the prefix cache keeps."""
    base = {"model": "tiny", "max_tokens": 16, "temperature": 0}
    found = [{"role": "user", "content": "Find the weather in Paris"}]
    return [
        {**base, "messages": [{"role": "user", "content": "Hello there"}]},
        {**base, "system": SYSTEM, "messages": [{"role": "user", "content": "Tell me a story"}]},
        {**base, "tools": [WEATHER], "tool_choice": {"type": "any"}, "messages": found},
        {**base, "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "get_weather"}, "messages": found},
        {**base, "tools": [WEATHER], "messages": found},
        {**base, "stop_sequences": ["e"], "messages": [{"role": "user", "content": "Say something"}]},
        {**base, "messages": [{"role": "user", "content": "Read this carefully. " * 150}]},
        {**base, "system": SYSTEM, "max_tokens": 24, "messages": [{"role": "user", "content": "And another"}]},
    ]


def answer(server: ServerProcess, body: dict) -> dict:
    response = httpx.post(server.url + "/v1/messages", json=body, headers=KEY, timeout=120)
    assert response.status_code == 200, response.text
    data = response.json()
    for block in data["content"]:
        block.pop("id", None)  # tool_use ids are random
    return {k: data[k] for k in ("content", "stop_reason", "stop_sequence", "usage")}


def answers_together(server: ServerProcess) -> list[dict]:
    """The eight at once. Which cached prefix each finds depends on the order they arrive in,
    so their usage is left out; the answers themselves must not depend on it."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: answer(server, b), bodies()))
    for a in answers:
        a["prompt_tokens"] = a["usage"]["input_tokens"] + a.pop("usage")["cache_read_input_tokens"]
    return answers


def test_two_ranks_answer_as_one_process_does(one_process, two_ranks):
    # Warm each prefix cache the same way, then eight at once, then a repeat that hits the cache.
    for server in (one_process, two_ranks):
        answer(server, bodies()[1])
    together = [answers_together(s) for s in (one_process, two_ranks)]
    assert together[0] == together[1]
    assert any(block["type"] == "tool_use" for a in together[1] for block in a["content"])
    repeat = [answer(s, bodies()[7]) for s in (one_process, two_ranks)]
    assert repeat[0] == repeat[1]
    assert repeat[1]["usage"]["cache_read_input_tokens"] > 0


def test_a_pipeline_of_two_ranks_answers_as_one_process_does(tmp_path_factory):
    """Layers split between the ranks (qwen2: mlx-lm pipelines it), the same eight requests."""
    path = build_tiny_model(
        tmp_path_factory.mktemp("piped"), chat_template=TOOL_CHATML_TEMPLATE, tool_tokens=True, model_type="qwen2"
    )
    servers = [
        serve(tmp_path_factory, path, "piped-one"),
        serve(tmp_path_factory, path, "piped", ranks=2, pipeline="true"),
    ]
    try:
        together = [answers_together(s) for s in servers]
        assert together[0] == together[1]
        status = httpx.get(servers[1].url + "/v1/status", headers=KEY, timeout=10).json()
        assert [r["rank"] for r in status["ranks"]] == [0, 1]
    finally:
        for server in servers:
            assert server.stop() == 0, server.output()


def test_status_lists_each_rank_with_its_memory(two_ranks):
    status = httpx.get(two_ranks.url + "/v1/status", headers=KEY, timeout=10).json()
    ranks = status["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["pid"] == two_ranks.proc.pid and all(r["alive"] for r in ranks)
    assert all(r["weights_bytes"] > 0 and r["memory_bytes"] > 0 for r in ranks)
    listed = subprocess.run(
        [sys.executable, "-m", "pensieve_cli", "status", "--port", str(two_ranks.port)],
        env={**os.environ, "PENSIEVE_HOME": str(two_ranks.home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "rank 1" in listed.stdout and "running" in listed.stdout, listed.stdout + listed.stderr


def test_streaming_and_a_cancelled_stream_through_two_ranks(two_ranks):
    body = {**bodies()[0], "stream": True}
    with httpx.stream("POST", two_ranks.url + "/v1/messages", json=body, headers=KEY, timeout=60) as response:
        raw = "".join(response.iter_text())
    events = sse_events(raw)
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    # A long answer abandoned after its first event: both ranks drop it at the same turn.
    long = {**bodies()[0], "max_tokens": 2000, "stream": True}
    with httpx.stream("POST", two_ranks.url + "/v1/messages", json=long, headers=KEY, timeout=60) as response:
        next(response.iter_lines())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        running = httpx.get(two_ranks.url + "/v1/status", headers=KEY, timeout=10).json()["running"]
        if not running:
            break
        time.sleep(0.2)
    assert not running
    assert answer(two_ranks, bodies()[0])["stop_reason"] == "max_tokens"  # the group still serves


def rank_pids(server: ServerProcess) -> list[int]:
    return [r["pid"] for r in httpx.get(server.url + "/v1/status", headers=KEY, timeout=10).json()["ranks"]]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie child of rank 0 until it reaps it: as good as gone.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] == "Z"


def test_a_killed_rank_fails_in_flight_and_new_requests_clearly(model_dir, tmp_path_factory):
    # The ring backend usually reports a dead peer at once; when a collective hangs instead, the
    # rank timeout catches it: short here, so the test is bounded either way.
    server = serve(tmp_path_factory, model_dir, "killed", ranks=2, rank_timeout_s=10)
    try:
        follower = rank_pids(server)[1]
        long = {**bodies()[0], "max_tokens": 3000, "stream": True}
        with httpx.stream("POST", server.url + "/v1/messages", json=long, headers=KEY, timeout=60) as response:
            lines = response.iter_lines()
            next(lines)
            os.kill(follower, signal.SIGKILL)
            raw = "\n".join(lines)
        assert "event: error" in raw and "a rank of the distributed model" in raw, raw[-500:]
        after = httpx.post(server.url + "/v1/messages", json=bodies()[0], headers=KEY, timeout=30)
        assert after.status_code == 500 and after.json()["error"]["type"] == "api_error"
        assert "a rank of the distributed model" in after.json()["error"]["message"]
        health = httpx.get(server.url + "/health", timeout=10).json()
        assert health["status"] == "degraded" and "distributed" in health["problem"]
    finally:
        assert server.stop() == 0, server.output()


def test_a_hung_rank_is_detected_and_stop_ends_every_rank(model_dir, tmp_path_factory):
    server = serve(tmp_path_factory, model_dir, "hung", ranks=2, rank_timeout_s=3)
    follower = rank_pids(server)[1]
    try:
        os.kill(follower, signal.SIGSTOP)
        started = time.monotonic()
        response = httpx.post(server.url + "/v1/messages", json=bodies()[0], headers=KEY, timeout=60)
        assert response.status_code == 500 and "stopped answering" in response.json()["error"]["message"]
        assert time.monotonic() - started < 15
        assert httpx.get(server.url + "/health", timeout=10).json()["status"] == "degraded"
    finally:
        assert server.stop() == 0, server.output()  # SIGTERM, as `pensieve stop` sends
    deadline = time.monotonic() + 20
    while not gone(follower) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gone(follower)


def test_a_follower_whose_rank_0_hangs_ends_after_the_rank_timeout(model_dir, tmp_path_factory):
    """Rank 0 stopped (a hung process, a host gone to sleep): its follower does not hold its shard
    forever. Rank 0 shares a turn every second even idle, so a wait past the timeout is a hang."""
    server = serve(tmp_path_factory, model_dir, "hung-rank-0", ranks=2, rank_timeout_s=4)
    follower = rank_pids(server)[1]
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 30
        while not gone(follower) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert gone(follower), "the follower still waits on a stopped rank 0"
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()  # rank 0 finds its group gone; how it exits is the killed-rank test's concern


# A test double for ssh: no other machine is reachable here. It runs the remote command on this
# one as sshd would, through a shell with a login's bare environment, and notes its arguments.
SSH_DOUBLE = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/calls"
for last; do :; done
exec env -i HOME="$HOME" PATH=/usr/bin:/bin /bin/sh -c "$last"
"""


def test_a_rank_on_another_host_starts_over_ssh_and_answers_as_one_process_does(one_process, model_dir, tmp_path):
    """Rank 1 on a host that is not this one: started over ssh with its variables exported and
    the ring's hostfile written there by the command line, not inherited from rank 0."""
    doubles = tmp_path / "bin"
    doubles.mkdir()
    (doubles / "ssh").write_text(SSH_DOUBLE)
    (doubles / "ssh").chmod(0o755)
    hosts = tmp_path / "hosts.json"
    hosts.write_text(json.dumps({"hosts": [{"ssh": "127.0.0.1"}, {"ssh": "rank1.example", "ips": ["127.0.0.1"]}]}))
    env = isolated_env(tmp_path)
    env["PATH"] = f"{doubles}:{env['PATH']}"
    args = ["--model", str(model_dir), "--port", env["PENSIEVE_PORT"], "--hostfile", str(hosts)]
    server = ServerProcess(args, env, int(env["PENSIEVE_PORT"]), tmp_path / "server.log")
    try:
        server.wait_ready()
        calls = (doubles / "calls").read_text().splitlines()
        assert len(calls) == 1 and calls[0].startswith("-o BatchMode=yes rank1.example "), calls
        assert "MLX_RANK=1" in calls[0] and "pensieve_server.follower" in calls[0]
        # A forced tool call; usage aside, since one_process may have cached this prompt already.
        here, there = (answer(s, bodies()[3]) for s in (server, one_process))
        assert {k: here[k] for k in ("content", "stop_reason")} == {k: there[k] for k in ("content", "stop_reason")}
        assert [r["alive"] for r in httpx.get(server.url + "/v1/status", headers=KEY, timeout=10).json()["ranks"]] == [
            True,
            True,
        ]
    finally:
        assert server.stop() == 0, server.output()


def test_a_rank_that_never_joins_stops_the_start_with_its_reason(model_dir, tmp_path):
    hosts = tmp_path / "hosts.json"
    hosts.write_text(
        json.dumps({"hosts": [{"ssh": "127.0.0.1"}, {"ssh": "no-such-host.invalid", "ips": ["10.9.9.9"]}]})
    )
    env = isolated_env(tmp_path)
    args = ["--model", str(model_dir), "--port", str(free_port()), "--hostfile", str(hosts)]
    server = ServerProcess(args, env, int(env["PENSIEVE_PORT"]), tmp_path / "server.log")
    assert server.wait_exit(timeout=90) == 1
    assert "rank 1 (on no-such-host.invalid) exited" in server.output()


def test_the_api_streaming_and_cancellation_suites_pass_against_two_ranks():
    """The same test files the one-process server passes, their servers started with a hostfile."""
    here = Path(__file__).parent
    suites = [str(here / "test_contract_streaming.py"), str(here / "test_cancellation.py")]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *suites],
        env={**os.environ, "PENSIEVE_TEST_RANKS": "2"},
        capture_output=True,
        text=True,
        timeout=900,
        cwd=here.parent,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
