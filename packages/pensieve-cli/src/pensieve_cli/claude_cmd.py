"""`pensieve claude`: run Claude Code against this server."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import urllib.error

import click

from pensieve_core import CLAUDE_TIERS, Settings, load_settings

from . import daemon
from .errors import fail

# Claude Code reads CLAUDE_CODE_AUTO_COMPACT_WINDOW below this as this (2.1.332).
_MIN_COMPACT_WINDOW = 100_000


def served_window(settings: Settings) -> int | None:
    """The smallest context of what the running server lists (every model Claude Code may be
    pointed at through it), or None when no server answers."""
    try:
        listing = json.loads(daemon.fetch(settings, "/v1/models?limit=1000"))
    except (OSError, urllib.error.URLError, ValueError):
        return None
    windows = [m["max_input_tokens"] for m in listing.get("data", []) if m.get("max_input_tokens")]
    return min(windows, default=None)


def claude_environment(settings: Settings, window: int | None = None) -> dict[str, str]:
    env = {
        "ANTHROPIC_BASE_URL": daemon.base_url(settings),
        "ANTHROPIC_AUTH_TOKEN": settings.api_key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        # /model lists the claude-* ids this server serves (GET /v1/models).
        "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1",
        # Both change the prompt every turn and so break prefix-cache reuse.
        "CLAUDE_CODE_ATTRIBUTION_HEADER": "0",
        "CLAUDE_CODE_TOTAL_TOKENS_REMINDER": "off",
    }
    if window:
        # The window for model names Claude Code does not know (configured tier models)...
        env["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] = str(window)
        if window >= _MIN_COMPACT_WINDOW:
            # ...and the compaction window for every name, claude-* ones included.
            env["CLAUDE_CODE_AUTO_COMPACT_WINDOW"] = str(window)
    # Claude Code's tier names go to the tier models the server was configured with.
    for tier in CLAUDE_TIERS:
        if configured := getattr(settings, f"{tier}_model"):
            env[f"ANTHROPIC_DEFAULT_{tier.upper()}_MODEL"] = configured
    if settings.haiku_model:  # background work (titles, summaries); older versions read this name
        env["ANTHROPIC_SMALL_FAST_MODEL"] = settings.haiku_model
    if settings.sonnet_model:  # subagents run on the sonnet tier instead of the main model
        env["CLAUDE_CODE_SUBAGENT_MODEL"] = settings.sonnet_model
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
        window = served_window(settings)
        if window is None:
            click.echo(
                f"pensieve: no server at {daemon.base_url(settings)}; Claude Code's context window is left "
                "unset (start pensieve first)",
                err=True,
            )
        env = claude_environment(settings, window)
        if print_env:
            for key, value in env.items():
                click.echo(f"export {key}={shlex.quote(value)}")
            return
        program = shutil.which("claude")
        if program is None:
            raise RuntimeError("Claude Code is not installed (npm install -g @anthropic-ai/claude-code)")
        os.execvpe(program, [program, *args], {**os.environ, **env})
