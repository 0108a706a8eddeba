import socket

from click.testing import CliRunner

from pensieve_cli import cli


def test_help_lists_start():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and "start" in result.output


def test_start_help_lists_its_flags():
    result = CliRunner().invoke(cli, ["start", "--help"])
    assert result.exit_code == 0
    for flag in ("--model", "--host", "--port", "--api-key", "--home", "--config"):
        assert flag in result.output


def test_bad_config_is_one_clear_line_and_exit_1(tmp_path):
    (tmp_path / "config.json").write_text('{"port": "high"}')
    result = CliRunner().invoke(cli, ["start", "--home", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().startswith("pensieve: invalid configuration")
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_unknown_model_is_one_clear_line(tmp_path):
    # On a free port: start binds before it loads, and 7777 may be the user's own server.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["start", "--home", str(tmp_path), "--model", "/no/such/model.gguf", "--port", str(port)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "no such file or directory: /no/such/model.gguf" in result.output
    assert "Traceback" not in result.output


def test_logs_escape_line_breaks_and_are_json_off_a_terminal(capsys):
    import json

    import structlog

    from pensieve_cli.logging import configure_logging

    configure_logging("info", json_lines=True)
    structlog.get_logger("t").info("request", path="/v1/x\r\nINJECTED: yes")
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and json.loads(line)["path"] == "/v1/x\\r\\nINJECTED: yes"
    configure_logging("info", json_lines=False)
    structlog.get_logger("t").info("request", path="/a\nb")
    out = capsys.readouterr().err
    assert out.count("\n") == 1 and "/a\\nb" in out
    structlog.reset_defaults()
