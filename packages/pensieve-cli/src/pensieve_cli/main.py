"""The `pensieve` command line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from pensieve_core import DEFAULT_API_KEY, Settings, load_settings

from . import daemon
from .cache_cmd import cache
from .claude_cmd import claude
from .config_cmd import config
from .errors import fail
from .logging import configure_logging
from .models_cmd import models, pull, rm, validate
from .open_cmd import open_page


def _settings(**flags: Any) -> Settings:
    config_file = flags.pop("config", None)
    return load_settings(flags, config_file=Path(config_file) if config_file else None)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pensieve-cli", prog_name="pensieve")
def cli() -> None:
    """Pensieve: a local LLM server that speaks the Anthropic Messages API."""


def _server_options(fn: Any) -> Any:
    for option in reversed(
        [
            click.option("--model", help="Alias, Hugging Face repo id, MLX model directory or .gguf file."),
            click.option("--host", help="Address to bind (default 127.0.0.1)."),
            click.option("--port", type=int, help="Port to listen on (default 7777)."),
            click.option("--api-key", help=f"Key clients must send (default {DEFAULT_API_KEY})."),
            click.option("--home", type=click.Path(file_okay=False), help="Pensieve's home directory."),
            click.option("--config", type=click.Path(dir_okay=False), help="JSON config file."),
            click.option(
                "--max-output-tokens", type=click.IntRange(min=1), help="Cap on tokens generated per request."
            ),
            click.option(
                "--kv-bits",
                type=click.Choice(["4", "8"]),
                help="Keep keys and values in 4 or 8 bits: longer contexts in less memory, one request at a time.",
            ),
            click.option(
                "--hostfile",
                type=click.Path(dir_okay=False, exists=True),
                help="One model across the machines in this mlx.launch hostfile (rank 0, listed first, serves).",
            ),
            click.option(
                "--backend",
                type=click.Choice(["ring", "jaccl", "jaccl-ring", "nccl"]),
                help="MLX's distributed backend for --hostfile (default ring).",
            ),
            click.option(
                "--pipeline/--tensor",
                "pipeline",
                default=None,
                help="With --hostfile: split the layers in a pipeline instead of tensor-parallel (the default).",
            ),
            click.option("--certfile", type=click.Path(dir_okay=False, exists=True), help="TLS certificate (PEM)."),
            click.option("--keyfile", type=click.Path(dir_okay=False, exists=True), help="TLS private key (PEM)."),
        ]
    ):
        fn = option(fn)
    return fn


@cli.command()
@_server_options
@click.option("--daemon", "background", is_flag=True, help="Run in the background (pid and log files under the home).")
def start(background: bool, **flags: Any) -> None:
    """Serve the Messages API (in the foreground unless --daemon)."""
    from pensieve_server import run_server

    with fail():
        settings = _settings(**flags)
        if background:
            daemon.start(settings, flags)
            return
        configure_logging(settings.log_level)
        scheme = "https" if settings.certfile else "http"

        def ready() -> None:
            _say(f"pensieve listening on {scheme}://{settings.host}:{settings.port}")

        def note(text: str) -> None:
            _say(f"pensieve: {text}", fg="yellow")

        _say(f"pensieve: loading {settings.model}")
        try:
            asyncio.run(run_server(settings, on_ready=ready, on_note=note))
        except KeyboardInterrupt:
            pass
    # Everything is closed; skip native static destructors, which MLX's stream threads can
    # race at interpreter exit ("terminate called without an active exception", seen in CI runs).
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the reader of a pipe is gone: nothing left to tell it
            pass
    os._exit(0)


def _say(text: str, **style: Any) -> None:
    """A status line on stderr that cannot fail: its reader (`| tee log`) may have gone."""
    try:
        click.secho(text, err=True, **style)
    except (OSError, ValueError):
        pass


@cli.command()
@click.option("--home", type=click.Path(file_okay=False), help="Pensieve's home directory.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to let requests finish.")
def stop(home: str | None, timeout: float) -> None:
    """Stop the background server gracefully (in-flight requests finish)."""
    with fail():
        settings = _settings(home=home)
        pid = daemon.stop(settings, timeout_s=timeout)
        if pid is None:
            click.echo("pensieve is not running")
            return
        click.echo(f"pensieve stopped (pid {pid})")


@cli.command()
@click.option("--home", type=click.Path(file_okay=False), help="Pensieve's home directory.")
@click.option("--port", type=int, help="Server port (default: where `start --daemon` put it, else configured).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(home: str | None, port: int | None, as_json: bool) -> None:
    """Is the server running: pid, URL, model, device, memory, uptime, requests, speed, and each
    request running now (a long prompt's prefill with its share done)."""
    with fail():
        settings = _settings(home=home, port=port)
        info = _status(settings if port else daemon.located(settings))
    if as_json:
        click.echo(json.dumps(info, indent=2))
    elif not info["running"]:
        click.echo(f"pensieve is not running ({info['url']})")
    else:
        click.echo(f"pensieve is running on {info['url']} (pid {info['pid'] or 'unknown'})")
        if info["status"] != "ok":
            click.echo(f"  {'status':<15} {info['status']}: {info['problem']}")
        shown = ("model", "device", "memory_gb", "uptime_s", "requests", "in_flight", "tokens_per_s", "cache_hit_rate")
        for key in shown:
            # Counts an older server or a refused key leaves out read as a dash, never "None".
            click.echo(f"  {key:<15} {'—' if info[key] is None else info[key]}")
        if info["fallback"]:
            click.echo(f"  {'fallback':<15} {info['fallback']}")
        for generation in info["generations_running"]:
            click.echo(f"  {'running':<15} {_running_line(generation)}")
        for rank in info["ranks"]:
            click.echo(f"  {'rank ' + str(rank['rank']):<15} {_rank_line(rank)}")
    if not info["running"]:
        sys.exit(3)


def _status(settings: Settings) -> dict[str, Any]:
    pid = daemon.running_pid(settings)
    health = daemon.health(settings)
    info: dict[str, Any] = {"running": health is not None, "pid": pid, "url": daemon.base_url(settings)}
    if health is None:
        return info
    # The counts need the key; without it (or from an older server) they show as None.
    numbers = daemon.server_status(settings) or {}
    requests, speed, cache = (numbers.get(k, {}) for k in ("requests", "speed", "prefix_cache"))
    info.update(
        status=health.get("status", "ok"),
        problem=health.get("problem"),
        model=health["model"]["id"],
        fallback_from=health["model"].get("fallback_from"),
        fallback=daemon.fallback_line(health),
        device=f"{health['device']['kind']} ({health['device']['name']})",
        memory_gb=round(health["memory"]["active_bytes"] / 1e9, 2),
        uptime_s=health["uptime_s"],
        requests=requests.get("total"),
        in_flight=requests.get("in_flight"),
        tokens_per_s=speed.get("decode_tokens_per_s"),
        cache_hit_rate=cache.get("read_fraction"),
        generations_running=numbers.get("running", []),
        ranks=numbers.get("ranks", []),
    )
    return info


def _rank_line(rank: dict[str, Any]) -> str:
    """One process of a model sharded across ranks: where it runs, its memory, whether it runs."""
    state = "running" if rank["alive"] else "exited"
    weights, memory = rank["weights_bytes"] / 1e9, rank["memory_bytes"] / 1e9
    return f"{rank['host']} pid {rank['pid']}, weights {weights:.2f} GB, memory {memory:.2f} GB, {state}"


def _running_line(generation: dict[str, Any]) -> str:
    """One generation running now: its phase (a long prefill's share done, a decode's tokens so far) and age."""
    phase, percent = generation["phase"], generation.get("prefill_percent")  # older servers send no percent
    if phase == "prefill" and percent is not None:
        phase = f"prefill {int(percent)}%"
    elif phase == "decoding":
        phase = f"decoding, {generation['output_tokens']} tokens"
    return f"{generation['request_id']} {phase} ({generation['age_s']} s)"


for command in (config, pull, models, rm, validate, claude, cache, open_page):
    cli.add_command(command)
