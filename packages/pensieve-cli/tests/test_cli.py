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
    result = CliRunner().invoke(cli, ["start", "--home", str(tmp_path), "--model", "/no/such/model.gguf"])
    assert result.exit_code == 1
    assert "neither a GGUF file nor an MLX model directory" in result.output
    assert "Traceback" not in result.output
