"""`pensieve cache list | clear`: the prefix caches kept on disk across restarts."""

from __future__ import annotations

import json
import time

import click

from pensieve_core import load_settings

from .errors import fail
from .models_cmd import _human


@click.group("cache")
def cache() -> None:
    """Prefix caches on disk (system prompts and tools, reused after a restart)."""


@cache.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_cmd(as_json: bool) -> None:
    """List persisted prefixes, newest first."""
    from pensieve_inference.disk_cache import list_entries

    with fail():
        root = load_settings({}).prefix_cache_dir
        entries = list_entries(root)
    rows = [
        {"model": e.model_name, "weights": e.model, "tokens": len(e.tokens), "size_bytes": e.size_bytes,
         "saved_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.saved_at)), "path": str(e.path)}
        for e in entries
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no persisted prefixes in {root}")
        return
    click.echo(f"{'MODEL':<40} {'TOKENS':>7} {'SIZE':>9} SAVED")
    for r in rows:
        click.echo(f"{r['model'][:40]:<40} {r['tokens']:>7} {_human(r['size_bytes']):>9} {r['saved_at']}")
    click.echo(f"{len(rows)} prefixes, {_human(sum(r['size_bytes'] for r in rows))} in {root}")


@cache.command("clear")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def clear_cmd(yes: bool) -> None:
    """Delete every persisted prefix (a running server keeps what it has in memory)."""
    from pensieve_inference.disk_cache import clear, list_entries

    with fail():
        root = load_settings({}).prefix_cache_dir
        entries = list_entries(root)
        if not entries:
            click.echo(f"no persisted prefixes in {root}")
            return
        if not yes:
            click.confirm(f"Delete {len(entries)} persisted prefixes ({_human(sum(e.size_bytes for e in entries))})?", abort=True)
        files, size = clear(root)
    click.echo(f"deleted {files} persisted prefixes ({_human(size)})")
