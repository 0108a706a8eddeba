"""`pensieve open`: the running server's status page in a browser, with access. The key goes in
the URL's fragment, which a browser never sends: the page reads it and keeps it in the tab."""

from __future__ import annotations

import webbrowser
from urllib.parse import quote

import click

from pensieve_core import load_settings

from . import daemon
from .errors import fail


@click.command("open")
@click.option("--host", help="Server address (default: configured).")
@click.option("--port", type=int, help="Server port (default: configured).")
@click.option("--home", type=click.Path(file_okay=False), help="Pensieve's home directory.")
@click.option("--print-url", is_flag=True, help="Print the URL without opening a browser.")
def open_page(host: str | None, port: int | None, home: str | None, print_url: bool) -> None:
    """Open the status page (models, memory, requests in flight, speed) in a browser."""
    with fail():
        settings = load_settings({"host": host, "port": port, "home": home})
        if host is None and port is None:  # the daemon's own address, whatever --port it got
            settings = daemon.located(settings)
        url = daemon.base_url(settings)
        if daemon.health(settings) is None:
            raise RuntimeError(f"no server answers at {url}; start one with `pensieve start`")
        page = f"{url}/#key={quote(settings.api_key, safe='')}"
        click.echo(page)
        if not print_url and not webbrowser.open(page):
            click.echo("pensieve: no browser could be started here; open the URL above", err=True)
