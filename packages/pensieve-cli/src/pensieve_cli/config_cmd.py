"""`pensieve config`: show, get, set, unset, path."""

from __future__ import annotations

import json
from typing import Any

import click
import msgspec

from pensieve_core import DEFAULT_API_KEY, Settings, check_setting_name, load_settings, parse_setting, read_config_file
from pensieve_core.errors import ConfigError

from . import daemon
from .errors import fail


def _file(ctx: click.Context) -> Any:
    settings = load_settings({"home": ctx.obj.get("home")})
    return settings.config_path()


def _restart_hint(before: Settings, key: str) -> None:
    """Settings are read when the server starts: say so when one runs at the address it had."""
    where = daemon.located(before)
    if daemon.health(where, timeout=0.5) is None:
        return
    how = "`pensieve stop`, then `pensieve start --daemon`" if daemon.running_pid(before) else "restart it"
    click.echo(f"pensieve: the server running at {daemon.base_url(where)} uses the new {key} once restarted ({how})")


def _write(path: Any, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


@click.group("config")
@click.option("--home", type=click.Path(file_okay=False), help="Pensieve's home directory.")
@click.pass_context
def config(ctx: click.Context, home: str | None) -> None:
    """Read and change settings in <home>/config.json."""
    ctx.ensure_object(dict)["home"] = home


@config.command("path")
@click.pass_context
def config_path(ctx: click.Context) -> None:
    """Print the config file's path."""
    click.echo(str(_file(ctx)))


@config.command("show")
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Print the effective settings (defaults < file < environment), as JSON."""
    with fail():
        settings = load_settings({"home": ctx.obj.get("home")})
        data = msgspec.to_builtins(settings)
        data["api_key"] = "(default)" if settings.api_key == DEFAULT_API_KEY else "(set)"
        click.echo(json.dumps(data, indent=2))


@config.command("get")
@click.argument("key")
@click.pass_context
def config_get(ctx: click.Context, key: str) -> None:
    """Print one effective setting."""
    with fail():
        check_setting_name(key)
        value = getattr(load_settings({"home": ctx.obj.get("home")}), key)
        click.echo(json.dumps(value) if not isinstance(value, str) else value)


@config.command("set")
@click.argument("key")
@click.argument("value")
@click.pass_context
def config_set(ctx: click.Context, key: str, value: str) -> None:
    """Set KEY to VALUE in the config file (validated before it is written)."""
    with fail():
        before = load_settings({"home": ctx.obj.get("home")})
        path = before.config_path()
        data = read_config_file(path)
        candidate = {**data, key: parse_setting(key, value)}
        try:
            typed = msgspec.convert(candidate, Settings, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"invalid value for {key}: {exc}") from exc
        data[key] = msgspec.to_builtins(getattr(typed, key))
        _write(path, data)
        click.echo(f"{key} = {json.dumps(data[key])}")
        if getattr(typed, key) != getattr(before, key):
            _restart_hint(before, key)


@config.command("unset")
@click.argument("key")
@click.pass_context
def config_unset(ctx: click.Context, key: str) -> None:
    """Remove KEY from the config file."""
    with fail():
        check_setting_name(key)
        path = _file(ctx)
        data = read_config_file(path)
        if data.pop(key, None) is not None:
            _write(path, data)
        click.echo(f"{key} unset")
