"""The servers a benchmark runs side by side: pensieve and mlx_lm.server started as processes on
free ports, ready once they answer, stopped by SIGTERM; and each process's peak GPU memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

# Both servers get the same prompt-cache budget (three servers share one GPU in the replay).
CACHE_BYTES = 8 * 1024**3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str], port: int, ready_path: str, log: Path) -> None:
        self.name, self.label, self.port, self.log = name, name, port, log
        self.proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=2)
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"{name} not ready")

    def peak_rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class GpuMemory:
    """Peak GPU memory per process, sampled from nvidia-smi (absent on other machines)."""

    def __init__(self) -> None:
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self.available = subprocess.run(["which", "nvidia-smi"], capture_output=True).returncode == 0
        if self.available:
            threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            out = subprocess.run(
                ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
            ).stdout
            for line in out.splitlines():
                try:
                    pid, mib = (int(x) for x in line.split(","))
                except ValueError:
                    continue
                self.peak[pid] = max(self.peak.get(pid, 0), mib * 2**20)

    def stop(self) -> None:
        self._stop.set()


def start_pensieve(model: Path, home: Path, log_dir: Path, **settings: Any) -> Server:
    env = {**os.environ, "PENSIEVE_HOME": str(home), "PENSIEVE_LOG_LEVEL": "warning", "HF_HUB_OFFLINE": "1"}
    env.update({f"PENSIEVE_{k.upper()}": str(v) for k, v in settings.items()})
    port = free_port()
    cmd = [sys.executable, "-m", "pensieve_cli", "start", "--model", str(model), "--port", str(port)]
    return Server("pensieve", cmd, env, port, "/health", log_dir / f"pensieve-{port}.log")


def start_mlx_lm(model: Path, log_dir: Path) -> Server:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "mlx_lm",
        "server",
        "--model",
        str(model),
        "--port",
        str(port),
        "--log-level",
        "WARNING",
        "--prompt-cache-bytes",
        str(CACHE_BYTES),
    ]
    return Server(
        "mlx_lm.server", cmd, {**os.environ, "HF_HUB_OFFLINE": "1"}, port, "/v1/models", log_dir / f"mlx-{port}.log"
    )
