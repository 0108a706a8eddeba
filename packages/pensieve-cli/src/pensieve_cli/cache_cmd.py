"""`pensieve cache list | clear`: the prefix caches kept on disk across restarts, and (with
`--converted`) the GGUF files' converted weights kept so a file is converted once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from pensieve_core import load_settings

from .errors import fail
from .models_cmd import _human


@click.group("cache")
def cache() -> None:
    """Prefix caches on disk (system prompts and tools, reused after a restart)."""


_home = click.option("--home", type=click.Path(file_okay=False), help="Pensieve's home directory.")
_converted = click.option(
    "--converted", is_flag=True, help="GGUF files' converted weights instead (the next start converts again)."
)


@cache.command("list")
@_home
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--verify", is_flag=True, help="Also check every file's tensor bytes against its digest (reads them all)."
)
@_converted
def list_cmd(home: str | None, as_json: bool, verify: bool, converted: bool) -> None:
    """List persisted prefixes, newest first; a corrupt file shows as such (the server removes it)."""
    from pensieve_inference import list_disk_entries, verify_disk_entry

    if converted:
        return _list_converted(home, as_json)
    with fail():
        settings = load_settings({"home": home})
        root = settings.prefix_cache_dir
        entries = list_disk_entries(root)
        if verify:
            entries = [verify_disk_entry(e) for e in entries]
    rows: list[dict[str, Any]] = [
        {
            "model": e.model_name,
            "weights": e.model,
            "tokens": len(e.tokens),
            "size_bytes": e.size_bytes,
            "saved_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.saved_at)),
            "path": str(e.path),
            "problem": e.problem or None,
        }
        for e in entries
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no persisted prefixes in {root}")
        _converted_note(settings.converted_dir)
        return
    click.echo(f"{'MODEL':<40} {'TOKENS':>7} {'SIZE':>9} SAVED")
    for r in rows:
        name = "(corrupt)" if r["problem"] else r["model"]
        click.echo(f"{name[:40]:<40} {r['tokens']:>7} {_human(r['size_bytes']):>9} {r['saved_at']}")
        if r["problem"]:
            click.echo(f"  {r['path']}: {r['problem']}")
    corrupt = sum(bool(r["problem"]) for r in rows)
    click.echo(
        f"{len(rows)} prefixes, {_human(sum(r['size_bytes'] for r in rows))} in {root}"
        + (f"; {corrupt} corrupt (removed at the next start or by `pensieve cache clear`)" if corrupt else "")
    )
    _converted_note(settings.converted_dir)


def _converted_note(root: Path) -> None:
    # One line, only when there are any: the prefix listing stays as it was otherwise.
    from pensieve_model_support import list_converted

    kept = list_converted(root)
    if kept:
        click.echo(
            f"also {len(kept)} converted GGUF files, {_human(sum(f.size_bytes for f in kept))}: "
            "`pensieve cache list --converted`"
        )


def _list_converted(home: str | None, as_json: bool) -> None:
    from pensieve_model_support import list_converted

    with fail():
        root = load_settings({"home": home}).converted_dir
        kept = list_converted(root)
    rows: list[dict[str, Any]] = [
        {
            "source": f.source,
            "source_exists": bool(f.source) and Path(f.source).exists(),
            "size_bytes": f.size_bytes,
            "saved_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f.saved_at)),
            "path": str(f.path),
            "problem": f.problem or None,
        }
        for f in kept
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no converted GGUF files in {root}")
        return
    # Paths are long: the GGUF's goes last, whole.
    click.echo(f"{'SIZE':>9} {'SAVED':<19} GGUF FILE")
    for r in rows:
        name = "(corrupt)" if r["problem"] else r["source"] + ("" if r["source_exists"] else " (gone)")
        click.echo(f"{_human(r['size_bytes']):>9} {r['saved_at']:<19} {name}")
        if r["problem"]:
            click.echo(f"  {r['path']}: {r['problem']}")
    click.echo(f"{len(rows)} converted GGUF files, {_human(sum(r['size_bytes'] for r in rows))} in {root}")


def check_files(root: Path) -> list[str]:
    """`validate`'s lines for the prefix cache: every file read and checked against its digest."""
    from pensieve_inference import list_disk_entries, verify_disk_entry

    entries = [verify_disk_entry(e) for e in list_disk_entries(root)]
    bad = [e for e in entries if e.problem]
    if not bad:
        return [f"ok   prefix cache: {len(entries)} files check out ({root})"]
    # A warning, not a failure: the server treats these files as misses and removes them.
    return [
        *(f"bad  prefix cache file {e.path}: {e.problem}" for e in bad),
        f"warn prefix cache: {len(bad)} of {len(entries)} files corrupt; the next start removes them "
        "(or run `pensieve cache clear`)",
    ]


@cache.command("clear")
@_home
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_converted
def clear_cmd(home: str | None, yes: bool, converted: bool) -> None:
    """Delete every persisted prefix, corrupt ones too (a running server keeps what it has in memory)."""
    from pensieve_inference import clear_disk_cache, list_disk_entries

    if converted:
        return _clear_converted(home, yes)
    with fail():
        root = load_settings({"home": home}).prefix_cache_dir
        entries = list_disk_entries(root)
        if not entries:
            click.echo(f"no persisted prefixes in {root}")
            return
        if not yes:
            click.confirm(
                f"Delete {len(entries)} persisted prefixes ({_human(sum(e.size_bytes for e in entries))})?", abort=True
            )
        files, size = clear_disk_cache(root)
    click.echo(f"deleted {files} persisted prefixes ({_human(size)})")


def _clear_converted(home: str | None, yes: bool) -> None:
    from pensieve_model_support import clear_converted, list_converted

    with fail():
        root = load_settings({"home": home}).converted_dir
        kept = list_converted(root)
        if not kept:
            click.echo(f"no converted GGUF files in {root}")
            return
        if not yes:
            total = _human(sum(f.size_bytes for f in kept))
            click.confirm(
                f"Delete {len(kept)} converted GGUF files ({total})? The next start converts again.", abort=True
            )
        files, size = clear_converted(root)
    click.echo(f"deleted {files} converted GGUF files ({_human(size)})")
