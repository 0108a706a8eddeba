"""The suite leaves the user's own pensieve alone: the CLI, run as the tests run it (in their
environment), looks for its server on a port of the test's own and keeps its files in a home of
the test's own, so a user's server on the default port 7777 and their ~/.pensieve are never
reached. (Checked without binding 7777: the tests never take the user's port.)"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from server_process import isolated_env


def _cli(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "pensieve_cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_test_environment_has_a_port_and_a_home_of_its_own(tmp_path):
    env = isolated_env(tmp_path)
    assert env["PENSIEVE_PORT"] != "7777"
    assert Path(env["PENSIEVE_HOME"]).is_relative_to(tmp_path) and Path(env["HOME"]).is_relative_to(tmp_path)


@pytest.mark.parametrize("args", [["status", "--json"], ["claude", "--print-env"]])
def test_the_cli_in_the_test_environment_looks_only_at_the_tests_port(tmp_path, args):
    env = isolated_env(tmp_path)
    result = _cli(env, *args)
    out = result.stdout + result.stderr
    assert f"http://127.0.0.1:{env['PENSIEVE_PORT']}" in out and ":7777" not in out
    if args[0] == "status":
        assert json.loads(result.stdout)["url"] == f"http://127.0.0.1:{env['PENSIEVE_PORT']}"
