"""The prefix cache on disk, attacked through its files on a live server: for every corruption
in the corpus (pensieve_inference.cache_faults) the server starts and serves, the file is a
logged miss and is removed (then written again, good), and the temperature-0 answer is the one
given before the file went bad. Two server starts cover the whole corpus."""

import json
import subprocess
import sys
import time

import httpx2 as httpx
from server_process import ServerProcess, free_port, isolated_env

from pensieve_inference.cache_faults import ALL
from pensieve_inference.disk_cache import read_entry, verify_entry

KEY = {"x-api-key": "pensieve-local-key"}
NAMES = sorted(ALL)


def system_prompt(i):
    # Distinct from the first word on: no case's file is a prefix of another's prompt.
    return f"{'ABCDEFGHIJKLMNOPQRSTUVWXYZ'[i]}{i} rules the fault test. " + "Keep every answer short. " * 8


def serve(model, env, log):
    port = free_port()
    proc = ServerProcess(["--model", str(model), "--port", str(port)], env, port, log)
    proc.wait_ready()
    return proc


def ask(proc, i):
    r = httpx.post(
        proc.url + "/v1/messages",
        headers=KEY,
        timeout=120,
        json={
            "model": "m",
            "max_tokens": 8,
            "temperature": 0,
            "system": system_prompt(i),
            "messages": [{"role": "user", "content": "Which case is this?"}],
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    return "".join(b.get("text", "") for b in body["content"]), body["usage"]


def wait_for_files(folder, count, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = {p for p in folder.glob("*/*.safetensors") if ".tmp" not in p.name}
        if len(files) == count:
            return files
        time.sleep(0.05)
    raise AssertionError(f"{count} prefix files not written in {timeout}s")


def test_every_corrupt_cache_file_is_a_logged_miss_and_the_answer_does_not_change(tiny_model_dir, tmp_path):
    env = isolated_env(tmp_path)
    cache_dir = tmp_path / "pensieve" / "prefix-cache"

    first = serve(tiny_model_dir, env, tmp_path / "first.log")
    answers, paths, seen = {}, {}, set()
    try:
        for i, name in enumerate(NAMES):
            answers[name], _ = ask(first, i)
            files = wait_for_files(cache_dir, i + 1)
            (paths[name],) = files - seen
            seen = files
    finally:
        assert first.stop() == 0, first.output()

    tokens = {}
    for name, path in paths.items():
        tokens[name] = len(read_entry(path).tokens)
        path.write_bytes(ALL[name](path.read_bytes()))
    listed = subprocess.run(
        [sys.executable, "-m", "pensieve_cli", "cache", "list", "--json", "--verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert {r["path"] for r in json.loads(listed.stdout) if r["problem"]} == {str(p) for p in paths.values()}

    second = serve(tiny_model_dir, env, tmp_path / "second.log")
    try:
        for i, name in enumerate(NAMES):
            text, usage = ask(second, i)
            assert text == answers[name], name
            assert usage["cache_read_input_tokens"] < tokens[name], f"{name}: the bad file was read"
    finally:
        assert second.stop() == 0, second.output()

    logged = [json.loads(line) for line in second.output().splitlines() if "prefix_cache_file_corrupt" in line]
    for name, path in paths.items():
        (line,) = [e for e in logged if e["path"] == str(path)]
        assert line["problem"], name
        # Removed, then written again from the fresh prefill: the file there now checks out.
        entry = read_entry(path)
        assert entry is None or verify_entry(entry).problem == "", name
