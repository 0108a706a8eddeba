"""`pensieve claude`: run Claude Code against this server."""

from __future__ import annotations

import os
import shlex
import shutil

import click

from pensieve_core import CLAUDE_TIERS, load_settings

from .daemon import base_url
from .errors import fail


def claude_environment(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {
        "ANTHROPIC_BASE_URL": base_url(settings),
        "ANTHROPIC_AUTH_TOKEN": settings.api_key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    # Claude Code's tier names go to the tier models the server was configured with.
    for tier in CLAUDE_TIERS:
        if configured := getattr(settings, f"{tier}_model"):
            env[f"ANTHROPIC_DEFAULT_{tier.upper()}_MODEL"] = configured
    return env


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--print-env", is_flag=True, help="Print the exports instead of running Claude Code.")
@click.option("--host", help="Server address (default: configured).")
@click.option("--port", type=int, help="Server port (default: configured).")
@click.option("--home", type=click.Path(file_okay=False), help="Pensieve's home directory.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def claude(print_env: bool, host: str | None, port: int | None, home: str | None, args: tuple[str, ...]) -> None:
    """Run Claude Code pointed at this server: pensieve claude [-- ARGS]."""
    with fail():
        settings = load_settings({"host": host, "port": port, "home": home})
        env = claude_environment(settings)
        if print_env:
            for key, value in env.items():
                click.echo(f"export {key}={shlex.quote(value)}")
            return
        program = shutil.which("claude")
        if program is None:
            raise RuntimeError("Claude Code is not installed (npm install -g @anthropic-ai/claude-code)")
        os.execvpe(program, [program, *args], {**os.environ, **env})
