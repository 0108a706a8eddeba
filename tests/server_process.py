"""A real `pensieve start` process for tests, on its own port and home."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

# A reply the scripted tiny model says and then ends its turn.
CHAT_REPLY = "Hello! How can I help?"
# A tool call in the generic JSON dialect whose tokens a bigram model can say.
TOOL_REPLY = '<tool_call>{ "name":"get_weather","arguments":{"days" :3}}</tool_call>'
# A call of Claude Code's Bash tool, spaced so that no token repeats with another successor.
BASH_REPLY = '<tool_call>{"name":"Bash","arguments": {"command" : "touch pensieve.txt"} }</tool_call>'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(
        self, args: list[str], env: dict[str, str], port: int, log: Path, *, command: list[str] | None = None
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.home = Path(env.get("PENSIEVE_HOME", ""))
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "pensieve_cli"]), "start", *args],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                return httpx.get(self.url + "/health", timeout=2).json()
            except httpx.HTTPError:
                time.sleep(0.3)
        raise AssertionError(f"server not ready in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")

    def wait_exit(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._out.close()

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        finally:
            self._out.close()


def isolated_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PENSIEVE_", "HF_"))}
    # A fresh pensieve home and an empty Hugging Face cache: nothing leaks in from the machine.
    env.update(PENSIEVE_HOME=str(home / "pensieve"), HF_HOME=str(home / "hf"), HOME=str(home))
    # A free port, not the default 7777, where the user's own server may be listening.
    env["PENSIEVE_PORT"] = str(free_port())
    return env


def sse_events(raw: str) -> list[dict]:
    """Parse an SSE body; asserts each `event:` line names the same type as its data."""
    import json

    events = []
    for chunk in raw.replace("\r\n", "\n").strip().split("\n\n"):
        fields = {}
        for line in chunk.splitlines():
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if not fields:
            continue
        data = json.loads(fields["data"])
        assert data["type"] == fields["event"], chunk
        events.append(data)
    return events
