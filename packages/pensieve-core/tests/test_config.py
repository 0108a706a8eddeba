import json

import pytest

from pensieve_core import load_settings, parse_setting
from pensieve_core.errors import ConfigError


def test_defaults(tmp_path):
    s = load_settings(environ={"PENSIEVE_HOME": str(tmp_path)})
    assert (s.host, s.port, s.api_key, s.model) == ("127.0.0.1", 7777, "pensieve-local-key", "phi-3-mini")
    assert s.home == str(tmp_path)


def test_layers_file_then_env_then_flags(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"port": 1111, "model": "from-file", "api_key": "file-key", "host": "0.0.0.0"})
    )
    env = {"PENSIEVE_HOME": str(tmp_path), "PENSIEVE_PORT": "2222", "PENSIEVE_MODEL": "from-env"}
    s = load_settings({"model": "from-flag", "host": None}, environ=env)
    assert s.port == 2222  # env beats file
    assert s.model == "from-flag"  # flag beats env
    assert s.api_key == "file-key"  # file beats default
    assert s.host == "0.0.0.0"  # an unset flag leaves lower layers alone


def test_home_flag_chooses_the_config_file(tmp_path):
    (tmp_path / "config.json").write_text('{"port": 3333}')
    assert load_settings({"home": str(tmp_path)}, environ={}).port == 3333


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "cannot read config file"),
        ('{"port": "high"}', r"\$\.port"),
        ('{"prot": 1}', "prot"),
        ("[1]", "JSON object"),
    ],
)
def test_bad_config_file_is_a_clear_error(tmp_path, content, message):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings(environ={"PENSIEVE_HOME": str(tmp_path)})


def test_bad_port_from_env(tmp_path):
    with pytest.raises(ConfigError, match="port"):
        load_settings(environ={"PENSIEVE_HOME": str(tmp_path), "PENSIEVE_PORT": "70000"})


def test_parse_setting_splits_lists_and_refuses_unknown_names():
    assert parse_setting("allowed_origins", "https://a.example, ,https://b.example") == [
        "https://a.example",
        "https://b.example",
    ]
    assert parse_setting("port", "8080") == "8080"  # Settings converts it
    with pytest.raises(ConfigError, match="unknown setting 'colour'; settings: host, port"):
        parse_setting("colour", "red")


def test_a_bad_value_from_the_environment_names_the_variable_not_a_missing_file(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"PENSIEVE_HOME": str(tmp_path), "PENSIEVE_PORT": "abc"})
    assert "environment variable PENSIEVE_PORT" in caught.value.message
    assert "config.json" not in caught.value.message and r"$.port" in caught.value.message


def test_a_bad_value_in_the_file_still_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text('{"port": "high", "model": "x"}')
    env = {"PENSIEVE_HOME": str(tmp_path), "PENSIEVE_MODEL": "from-env"}
    with pytest.raises(ConfigError, match=r"invalid configuration \(.*config\.json\)"):
        load_settings(environ=env)


def test_kv_bits_takes_4_or_8_from_any_layer_and_refuses_other_widths(tmp_path):
    env = {"PENSIEVE_HOME": str(tmp_path), "PENSIEVE_KV_BITS": "8"}
    assert load_settings(environ=env).kv_bits == 8
    assert load_settings({"kv_bits": "4"}, environ=env).kv_bits == 4  # the flag's text beats the environment
    assert load_settings(environ={"PENSIEVE_HOME": str(tmp_path)}).kv_bits is None
    with pytest.raises(ConfigError, match=r"kv_bits must be 4 or 8 .*got 3"):
        load_settings({"kv_bits": 3}, environ=env)


def test_kv_bits_refuses_speculation_asked_for_by_name(tmp_path):
    env = {"PENSIEVE_HOME": str(tmp_path), "PENSIEVE_KV_BITS": "4"}
    assert load_settings({"speculative": "auto"}, environ=env).speculative == "auto"  # auto is off under kv_bits
    with pytest.raises(ConfigError, match='speculative must be "auto" or "off", not "prompt_lookup"'):
        load_settings({"speculative": "prompt_lookup"}, environ=env)
