"""Running pensieve in the background: pid file, the record of where it listens, log file, start,
stop, and asking it how it is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click
import msgspec

from pensieve_core import Settings


def pid_path(settings: Settings) -> Path:
    return settings.home_path / "pensieve.pid"


def record_path(settings: Settings) -> Path:
    return settings.home_path / "daemon.json"


def log_path(settings: Settings) -> Path:
    return settings.home_path / "logs" / "pensieve.log"


def base_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if settings.certfile else 'http'}://{host}:{settings.port}"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_pid(settings: Settings) -> int | None:
    path = pid_path(settings)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    if alive(pid):
        return pid
    path.unlink(missing_ok=True)  # stale: the process is gone
    return None


def located(settings: Settings) -> Settings:
    """The settings with the address and key `start --daemon` recorded, while that server's process
    lives: it may have been started with flags (`--port 7795`, `--api-key`) the config does not hold."""
    path = record_path(settings)
    try:
        record = json.loads(path.read_text())
        pid, host, port = int(record["pid"]), str(record["host"]), int(record["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return settings
    if not alive(pid):
        path.unlink(missing_ok=True)  # stale: the process is gone
        return settings
    tls = {"certfile": record.get("certfile"), "keyfile": record.get("keyfile")}
    # The key it was started with (`--api-key`), which `status` and `claude` must present.
    key = record.get("api_key") if isinstance(record.get("api_key"), str) else settings.api_key
    return msgspec.structs.replace(settings, host=host, port=port, api_key=key, **tls)


def fetch(settings: Settings, path: str, *, key: bool = True, timeout: float = 3.0) -> bytes:
    request = urllib.request.Request(base_url(settings) + path)
    if key:
        request.add_header("x-api-key", settings.api_key)
    # Certificates for a local TLS server are often self-signed: status only reads our own server.
    context = None
    if settings.certfile:
        import ssl

        context = ssl.create_default_context(cafile=settings.certfile)
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        body: bytes = response.read()
    return body


def _json(settings: Settings, path: str, *, key: bool, timeout: float = 3.0) -> dict[str, Any] | None:
    try:
        answer = json.loads(fetch(settings, path, key=key, timeout=timeout))
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


def health(settings: Settings, *, timeout: float = 3.0) -> dict[str, Any] | None:
    return _json(settings, "/health", key=False, timeout=timeout)


def server_status(settings: Settings) -> dict[str, Any] | None:
    """`GET /v1/status` (needs the key): None when refused, unanswered or from a server without it."""
    return _json(settings, "/v1/status", key=True)


def fallback_line(health: dict[str, Any]) -> str | None:
    """What to tell a user whose configured model is stood in for (health's model card)."""
    card = health.get("model") or {}
    if not card.get("fallback_from"):
        return None
    why = card.get("note") or f"serving {card.get('id')} in place of {card['fallback_from']}"
    return f"{why} (`pensieve pull {card['fallback_from']}` to get it, then restart)"


def start(settings: Settings, flags: dict[str, Any]) -> dict[str, Any]:
    """`pensieve start --daemon` with these flags: /health's answer once the server is up."""
    if (pid := running_pid(settings)) is not None:
        raise RuntimeError(f"pensieve is already running (pid {pid}, {base_url(located(settings))})")
    settings.home_path.mkdir(parents=True, exist_ok=True)
    argv = [
        arg for key, value in flags.items() if value is not None for arg in (f"--{key.replace('_', '-')}", str(value))
    ]
    if "--home" not in argv:
        argv += ["--home", str(settings.home_path)]
    click.echo(f"pensieve: starting in the background (log: {log_path(settings)})", err=True)
    answer = spawn(settings, argv)
    click.echo(f"pensieve running (pid {answer['pid']}) on {base_url(settings)}")
    if line := fallback_line(answer):
        click.secho(f"pensieve: {line}", err=True, fg="yellow")
    return answer


def spawn(settings: Settings, argv: list[str], *, wait_s: float = 600) -> dict[str, Any]:
    """Start `pensieve start` detached; return /health's answer once it comes with the new pid (a
    server already on the port answers too, with its own). A failed start leaves no pid file and
    no record."""
    log = log_path(settings)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pensieve_cli", "start", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_path(settings).write_text(str(proc.pid))
    record = {"pid": proc.pid, "host": settings.host, "port": settings.port, "api_key": settings.api_key}
    record |= {"certfile": settings.certfile, "keyfile": settings.keyfile}
    _write_private(record_path(settings), json.dumps(record) + "\n")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _forget(settings)
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise RuntimeError(f"the server exited during start-up: {tail[0]} (log: {log})")
        if (answer := health(settings)) is not None and answer.get("pid") == proc.pid:
            return answer
        time.sleep(0.3)
    raise RuntimeError(f"the server did not answer within {wait_s:.0f}s (log: {log})")


def _write_private(path: Path, text: str) -> None:
    """Readable by the user alone: the record holds the server's API key."""
    path.unlink(missing_ok=True)  # a file left by an older pensieve keeps its own mode otherwise
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def stop(settings: Settings, *, timeout_s: float) -> int | None:
    pid = running_pid(settings)
    if pid is None:
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
    _forget(settings)
    return pid


def _forget(settings: Settings) -> None:
    pid_path(settings).unlink(missing_ok=True)
    record_path(settings).unlink(missing_ok=True)
