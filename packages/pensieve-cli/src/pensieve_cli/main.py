"""The `pensieve` command line."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import click

from pensieve_core import load_settings
from pensieve_core.errors import PensieveError

from .logging import configure_logging


def _settings(**flags: Any) -> Any:
    config = flags.pop("config", None)
    return load_settings(flags, config_file=Path(config) if config else None)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pensieve-cli", prog_name="pensieve")
def cli() -> None:
    """Pensieve: a local LLM server that speaks the Anthropic Messages API."""


@cli.command()
@click.option("--model", help="Alias, Hugging Face repo id, MLX model directory or .gguf file.")
@click.option("--host", help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 7777).")
@click.option("--api-key", help="Key clients must send (default pensieve-local-key).")
@click.option("--home", type=click.Path(file_okay=False), help="Pensieve's home directory.")
@click.option("--config", type=click.Path(dir_okay=False), help="JSON config file.")
@click.option("--max-output-tokens", type=click.IntRange(min=1), help="Cap on tokens generated per request.")
def start(**flags: Any) -> None:
    """Serve the Messages API in the foreground until interrupted."""
    from pensieve_server import run_server

    try:
        settings = _settings(**flags)
        configure_logging(settings.log_level)

        def ready() -> None:
            click.echo(f"pensieve listening on http://{settings.host}:{settings.port}", err=True)

        def note(text: str) -> None:
            click.secho(f"pensieve: {text}", err=True, fg="yellow")

        click.echo(f"pensieve: loading {settings.model}", err=True)
        asyncio.run(run_server(settings, on_ready=ready, on_note=note))
    except PensieveError as exc:
        click.echo(f"pensieve: {exc.message}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
    # Everything is closed; skip native static destructors, which MLX's stream threads can
    # race at interpreter exit ("terminate called without an active exception", seen in CI runs).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
