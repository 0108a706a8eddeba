"""Errors are one clear line and a non-zero exit, not a traceback."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import click

from pensieve_core.errors import PensieveError


@contextlib.contextmanager
def fail() -> Iterator[None]:
    try:
        yield
    except PensieveError as exc:
        click.echo(f"pensieve: {exc.message}", err=True)
        sys.exit(1)
    except (RuntimeError, OSError) as exc:
        click.echo(f"pensieve: {exc}", err=True)
        sys.exit(1)
