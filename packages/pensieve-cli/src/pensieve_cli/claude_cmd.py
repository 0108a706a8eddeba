"""`pensieve claude`: run Claude Code against this server."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import urllib.error
from typing import Any

import click

from pensieve_core import CLAUDE_TIERS, DEFAULT_MODEL, Settings, load_settings

from . import daemon
from .errors import fail

# Claude Code reads CLAUDE_CODE_AUTO_COMPACT_WINDOW below this as this (2.1.332).
_MIN_COMPACT_WINDOW = 100_000
# Claude Code's system prompt and tool definitions alone are ~12-20K tokens (2.1.x, seen in issue
# 17), with room left for the first answer: below this a model fails on its first turn.
CLAUDE_CODE_MIN_CONTEXT = 24_000
# Claude Code's conversation and its subagents run on these tiers; haiku gets only short
# background prompts (titles, summaries), so a small haiku model is fine.
_PROMPT_TIERS = ("claude-opus-", "claude-sonnet-")


def served_windows(settings: Settings) -> list[dict[str, Any]]:
    """What the running server lists (GET /v1/models): every model Claude Code may be pointed
    at through it, with `max_input_tokens`; empty when it does not answer or refuses the key."""
    try:
        listing = json.loads(daemon.fetch(settings, "/v1/models?limit=1000"))
    except (OSError, urllib.error.URLError, ValueError):
        return []
    return [m for m in listing.get("data", []) if isinstance(m, dict) and m.get("max_input_tokens")]


def check_fits(listed: list[dict[str, Any]], health: dict[str, Any]) -> None:
    """Refuse a server whose model cannot hold Claude Code's prompt: the smallest behind the opus
    and sonnet tiers, else (an older server, or the key refused) the main model /health names."""
    card = health.get("model") or {}
    tiers = [m for m in listed if str(m.get("id", "")).startswith(_PROMPT_TIERS)]
    if tiers:
        smallest = min(tiers, key=lambda m: int(m["max_input_tokens"]))
        name, window = str(smallest.get("display_name") or smallest["id"]), int(smallest["max_input_tokens"])
    elif card.get("context_length"):
        name, window = str(card.get("id")), int(card["context_length"])
    else:
        return
    if window >= CLAUDE_CODE_MIN_CONTEXT:
        return
    standing_in = f", standing in for {card['fallback_from']}, which is not here" if card.get("fallback_from") else ""
    raise RuntimeError(
        f"the served model {name}{standing_in} holds {window:,} tokens, and Claude Code's system prompt "
        f"and tools alone take about 20K: it would fail on its first turn. {DEFAULT_MODEL} (128K tokens) "
        f"holds it: `pensieve pull {DEFAULT_MODEL}`, then `pensieve stop` and "
        f"`pensieve start --daemon --model {DEFAULT_MODEL}`."
    )


def _interactive() -> bool:
    return sys.stdin.isatty()


def _offer_start(settings: Settings, flags: dict[str, Any], yes: bool, where: str) -> dict[str, Any]:
    """Start a server when none answers (asking first on a terminal): /health's answer."""
    notice = f"no server answers at {daemon.base_url(settings)} ({where}), and Claude Code would wait on it"
    command = "pensieve start --daemon" + "".join(f" --{k} {v}" for k, v in flags.items() if v is not None)
    if yes:
        click.echo(f"pensieve: {notice}: starting one", err=True)
    elif _interactive():
        click.echo(f"pensieve: {notice}.", err=True)
        if not click.confirm("Start one now?", default=True, err=True):
            raise RuntimeError(f"not started; start one with `{command}`")
    else:
        raise RuntimeError(f"{notice}. Start one with `{command}`, or run `pensieve claude --yes` to have it started.")
    return daemon.start(settings, flags)


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
@click.option("--yes", "-y", is_flag=True, help="Start a server in the background when none answers.")
@click.option("--host", help="Server address (default: where `start --daemon` put it, else configured).")
@click.option("--port", type=int, help="Server port (default: where `start --daemon` put it, else configured).")
@click.option("--home", type=click.Path(file_okay=False), help="Pensieve's home directory.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def claude(
    print_env: bool, yes: bool, host: str | None, port: int | None, home: str | None, args: tuple[str, ...]
) -> None:
    """Run Claude Code pointed at this server: pensieve claude [-- ARGS]."""
    with fail():
        flags = {"host": host, "port": port, "home": home}
        configured = load_settings(flags)
        settings = configured if host or port else daemon.located(configured)
        if settings is not configured:
            where = "where `pensieve start --daemon` put it"
        else:
            where = "as given" if host or port else "configured"
        health = daemon.health(settings)
        if health is None and print_env:
            # The exports stay right for a server started later; the window is Claude Code's guess.
            click.echo(
                f"pensieve: no server answers at {daemon.base_url(settings)} ({where}); Claude Code's context "
                "window is left unset (start pensieve first)",
                err=True,
            )
        elif health is None:
            health = _offer_start(settings, flags, yes, where)
        listed = served_windows(settings) if health is not None else []
        if health is not None:
            check_fits(listed, health)
        window = min((int(m["max_input_tokens"]) for m in listed), default=None)
        env = claude_environment(settings, window)
        if print_env:
            for key, value in env.items():
                click.echo(f"export {key}={shlex.quote(value)}")
            return
        program = shutil.which("claude")
        if program is None:
            raise RuntimeError("Claude Code is not installed (npm install -g @anthropic-ai/claude-code)")
        os.execvpe(program, [program, *args], {**os.environ, **env})
