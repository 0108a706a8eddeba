"""Logging never raises and never shows a secret: a closed log pipe is survived, tracebacks
carry no locals in either renderer, and PENSIEVE_LOG_FORMAT picks the renderer."""

import json

import pytest
import structlog

from pensieve_cli.logging import configure_logging
from pensieve_core.errors import ConfigError

SECRET = "sk-SECRET-MARKER-1234"


@pytest.fixture(autouse=True)
def _reset_structlog():
    yield
    structlog.reset_defaults()


class ClosedPipe:
    """stderr after `| tee log` has died: every write is EPIPE."""

    def write(self, _text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def isatty(self) -> bool:
        return False


@pytest.mark.parametrize("json_lines", [True, False])
def test_a_closed_log_pipe_never_raises(monkeypatch, json_lines):
    monkeypatch.setattr("sys.stderr", ClosedPipe())
    configure_logging("info", json_lines=json_lines)
    log = structlog.get_logger("t")
    log.info("shutting_down", timeout_s=30)
    log.warning("again")  # and it stays quiet after the first failure


def _fail_with_a_secret_in_locals() -> None:
    authorization = f"Bearer {SECRET}"  # noqa: F841 — a local that a traceback must not show
    raise RuntimeError("boom")


def test_tracebacks_show_no_locals_in_either_renderer(capsys):
    for json_lines in (True, False):
        configure_logging("info", json_lines=json_lines)
        try:
            _fail_with_a_secret_in_locals()
        except RuntimeError:
            structlog.get_logger("t").exception("unhandled_error")
        err = capsys.readouterr().err
        assert "RuntimeError: boom" in err and "_fail_with_a_secret_in_locals" in err
        assert SECRET not in err, err


def test_log_format_is_chosen_by_pensieve_log_format(monkeypatch, capsys):
    # Under pytest stderr is no terminal, so JSON is the default and "console" must be asked for.
    monkeypatch.setenv("PENSIEVE_LOG_FORMAT", "console")
    configure_logging("info")
    structlog.get_logger("t").info("hello", n=1)
    line = capsys.readouterr().err
    assert "hello" in line and not line.startswith("{")
    monkeypatch.setenv("PENSIEVE_LOG_FORMAT", "json")
    configure_logging("info")
    structlog.get_logger("t").info("hello", n=1)
    assert json.loads(capsys.readouterr().err)["event"] == "hello"
    monkeypatch.setenv("PENSIEVE_LOG_FORMAT", "yaml")
    with pytest.raises(ConfigError, match="console or json"):
        configure_logging("info")
