"""`pensieve start --hostfile`: the processes of one model sharded across machines.

The hostfile is mlx.launch's (`{"backend": ..., "envs": [...], "hosts": [{"ssh": ..., "ips":
[...]}, ...]}`, or the bare list of hosts). This process is rank 0 and serves the API; it starts
every other rank itself (`python -m pensieve_server.follower`, over ssh for other machines, as
mlx.launch does) rather than through mlx.launch, because mlx.launch ends every rank when one
fails, and rank 0 must stay up to answer that the group is gone. The ranks talk over MLX's own
backends (ring over TCP, JACCL over Thunderbolt RDMA, NCCL); pensieve adds no transport."""

from __future__ import annotations

import faulthandler
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import structlog

from pensieve_core import Settings
from pensieve_core.errors import ConfigError
from pensieve_inference import Lockstep, RankInfo

log = structlog.get_logger("pensieve.ranks")

LOCAL_HOSTS = ("127.0.0.1", "localhost")
# mlx.launch's first ring port, for hosts other than this one (where free ports are picked).
RING_PORT = 32323


class Host(msgspec.Struct, kw_only=True):
    ssh: str
    ips: list[str] = []
    # JACCL: the RDMA device (or devices, one per cable) that reaches each rank; null for itself.
    rdma: list[str | list[str] | None] = []


class Hostfile(msgspec.Struct, kw_only=True):
    hosts: list[Host]
    backend: str = ""
    envs: list[str] = []


def read_hostfile(path: str) -> Hostfile:
    raw = Path(path).read_bytes()
    try:
        if raw.lstrip().startswith(b"["):
            hostfile = Hostfile(hosts=msgspec.json.decode(raw, type=list[Host]))
        else:
            hostfile = msgspec.json.decode(raw, type=Hostfile)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"hostfile {path}: {exc} (mlx.launch's format: see docs/distributed.md)") from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"hostfile {path} is not JSON: {exc}") from exc
    if len(hostfile.hosts) < 2:
        raise ConfigError(f"hostfile {path} lists {len(hostfile.hosts)} host(s): a group needs at least 2")
    if not _local(hostfile.hosts[0]):
        raise ConfigError(
            f"hostfile {path}: the first host ({hostfile.hosts[0].ssh}) is rank 0, which serves the API: "
            "start pensieve there, or list this machine first (127.0.0.1)"
        )
    return hostfile


def _local(host: Host) -> bool:
    return host.ssh in LOCAL_HOSTS or host.ssh == socket.gethostname()


def _written(content: str) -> str:
    fd, path = tempfile.mkstemp(prefix="pensieve-ranks-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        f.write(content)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ring_addresses(hostfile: Hostfile) -> list[list[str]]:
    """Each rank's ring address: free ports when every rank is on this machine, else mlx.launch's."""
    every_local = all(_local(h) for h in hostfile.hosts)
    addresses = []
    for rank, host in enumerate(hostfile.hosts):
        ip = host.ips[0] if host.ips else ("127.0.0.1" if _local(host) else host.ssh)
        port = _free_port() if every_local else RING_PORT + rank
        addresses.append([f"{ip}:{port}"])
    return addresses


BACKENDS = ("ring", "jaccl", "jaccl-ring", "nccl")
# Variables MLX reads as a file's path: their contents are written to a file on each host.
FILE_VARIABLES = ("MLX_HOSTFILE", "MLX_IBV_DEVICES")
# How long the other ranks may take to start (an interpreter and MLX loading, over ssh maybe)
# and to join, at least: the configured rank timeout is for a turn, which is much shorter.
START_TIMEOUT_S = 120.0
# What a follower prints just before it joins the group (follower.py).
READY = b"pensieve-rank-ready"


def _relay(process: subprocess.Popen[bytes], ready: threading.Event) -> None:
    """A follower's stdout onto ours, but for the line that says it is about to join."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip() == READY:
            ready.set()
            continue
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()


class RankGroup:
    """The other ranks' processes, and what every rank said of itself once loaded."""

    def __init__(self, settings: Settings) -> None:
        assert settings.hostfile is not None
        self.hostfile = read_hostfile(settings.hostfile)
        self.backend = self.hostfile.backend or settings.backend
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"backend {self.backend!r}: pensieve starts its ranks over {', '.join(BACKENDS)} "
                "(MPI's ranks are started by mpirun, which pensieve does not drive)"
            )
        self._settings = settings
        self._followers: list[tuple[Host, subprocess.Popen[bytes]]] = []
        self.ranks: list[RankInfo] = []
        self.lockstep: Lockstep | None = None
        self._closed = threading.Event()
        self._ready: list[threading.Event] = []
        # Why rank 0's worker counts the group as lost (set once the engine is up), or None.
        self.lost: Callable[[], str | None] = lambda: None

    def start(self) -> Lockstep:
        """Start every other rank, join the group as rank 0, and send them the settings."""
        env = self._rank_env()
        for rank, host in enumerate(self.hostfile.hosts[1:], start=1):
            process = self._spawn(rank, host, env)
            self._followers.append((host, process))
            ready = threading.Event()
            self._ready.append(ready)
            threading.Thread(target=_relay, args=(process, ready), name=f"pensieve-rank-{rank}", daemon=True).start()
        own = {k: _written(v) if k in FILE_VARIABLES else v for k, v in env.items()}
        os.environ.update(own, MLX_RANK="0")
        log.info("ranks_starting", ranks=len(self.hostfile.hosts), backend=self.backend)
        self._wait_ready()
        # Joining holds the GIL until every rank connects: a rank that dies in these seconds is
        # caught by a C-level timer (its traceback, then exit 1) rather than hanging the start.
        faulthandler.dump_traceback_later(max(START_TIMEOUT_S, self._settings.rank_timeout_s), exit=True)
        try:
            backend = env["PENSIEVE_BACKEND"]
            self.lockstep = Lockstep.join(backend, rank_timeout_s=self._settings.rank_timeout_s)
        finally:
            faulthandler.cancel_dump_traceback_later()
        # The others serve nothing of their own: they take rank 0's settings (config, flags, env).
        self.lockstep.share(msgspec.json.encode(self._settings))
        threading.Thread(target=self._watch, name="pensieve-rank-watch", daemon=True).start()
        return self.lockstep

    def _wait_ready(self) -> None:
        """Until every other rank says it is about to join (a line on its stdout), or one exits."""
        limit = max(START_TIMEOUT_S, self._settings.rank_timeout_s)
        deadline = time.monotonic() + limit
        while not all(ready.is_set() for ready in self._ready):
            if (problem := self.problem()) is not None or time.monotonic() > deadline:
                self.kill_followers()
                raise ConfigError(problem or f"the ranks did not start within {limit:.0f} s")
            time.sleep(0.1)

    def _rank_env(self) -> dict[str, str]:
        """The variables MLX's backend reads, as mlx.launch sets them; files' contents go in
        FILE_VARIABLES' variables (written to a file on each host by `_spawn`)."""
        env = dict(e.split("=", 1) for e in self.hostfile.envs if "=" in e)
        hosts = self.hostfile.hosts
        if self.backend == "ring":
            env["MLX_HOSTFILE"] = msgspec.json.encode(ring_addresses(self.hostfile)).decode()
        elif self.backend in ("jaccl", "jaccl-ring"):
            if not hosts[0].ips or any(len(h.rdma) != len(hosts) for h in hosts):
                raise ConfigError(
                    "a JACCL hostfile gives rank 0 an IP and every host one RDMA entry per rank "
                    "(mlx.distributed_config --backend jaccl writes it)"
                )
            env["MLX_JACCL_COORDINATOR"] = f"{hosts[0].ips[0]}:{RING_PORT}"
            env["MLX_IBV_DEVICES"] = msgspec.json.encode([h.rdma for h in hosts]).decode()
            if self.backend == "jaccl-ring":
                env["MLX_JACCL_RING"] = "1"
        elif self.backend == "nccl":
            first = self.hostfile.hosts[0]
            env["NCCL_HOST_IP"] = first.ips[0] if first.ips else "127.0.0.1"
            env["NCCL_PORT"] = str(_free_port())
            env["MLX_WORLD_SIZE"] = str(len(self.hostfile.hosts))
        env["PENSIEVE_BACKEND"] = "jaccl" if self.backend == "jaccl-ring" else self.backend
        env["PENSIEVE_LOG_LEVEL"] = self._settings.log_level
        return env

    def _spawn(self, rank: int, host: Host, env: dict[str, str]) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "pensieve_server.follower"]
        rank_env = {**env, "MLX_RANK": str(rank)}
        files = {k: rank_env.pop(k) for k in FILE_VARIABLES if k in rank_env}
        if _local(host):
            rank_env.update({k: _written(v) for k, v in files.items()})
            return subprocess.Popen(command, env={**os.environ, **rank_env}, stdout=subprocess.PIPE)
        # Another machine: the same interpreter path there, and the files written there.
        script = ""
        for k, content in files.items():
            script += f"f=$(mktemp); printf %s {shlex.quote(content)} > $f; export {k}=$f; "
        script += " ".join(f"export {k}={shlex.quote(v)};" for k, v in rank_env.items())
        script += " exec " + shlex.join(command)
        try:
            return subprocess.Popen(["ssh", "-o", "BatchMode=yes", host.ssh, script], stdout=subprocess.PIPE)
        except OSError as exc:
            self.kill_followers()
            raise ConfigError(f"cannot start rank {rank} on {host.ssh} over ssh: {exc}") from exc

    def _watch(self) -> None:
        """A rank that exits while the group serves: say so (rank 0's next turn fails the group)."""
        while not self._closed.wait(1.0):
            if self.lost() is not None:
                self.kill_followers()
            for host, process in self._followers:
                if process.poll() is not None and not getattr(process, "_reported", False):
                    process._reported = True  # type: ignore[attr-defined]
                    log.error("rank_exited", host=host.ssh, pid=process.pid, returncode=process.returncode)

    def problem(self) -> str | None:
        """A line naming the first rank whose process has exited, or None while all run."""
        for rank, (host, process) in enumerate(self._followers, start=1):
            if process.poll() is not None:
                return f"rank {rank} (on {host.ssh}) exited with status {process.returncode}; its log is above"
        return None

    def alive(self) -> list[bool]:
        return [True] + [p.poll() is None for _, p in self._followers]

    def close(self, timeout_s: float = 10.0) -> None:
        """After rank 0's worker stopped (which tells the others): wait for them, then end them."""
        self._closed.set()
        deadline = time.monotonic() + timeout_s
        for _, process in self._followers:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.terminate()
        for _, process in self._followers:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()

    def kill_followers(self) -> None:
        """The group is lost: whatever rank still runs may be stuck in a collective."""
        for _, process in self._followers:
            if process.poll() is None:
                process.kill()


class RankStatus(RankInfo, kw_only=True):
    alive: bool  # its process is running (rank 0: this one)


def describe(group: RankGroup | None) -> list[RankStatus]:
    """Each rank, its host, process, memory and whether it runs (none off a group)."""
    if group is None:
        return []
    alive = group.alive()
    return [
        RankStatus(**msgspec.structs.asdict(info), alive=alive[i] if i < len(alive) else False)
        for i, info in enumerate(group.ranks)
    ]
