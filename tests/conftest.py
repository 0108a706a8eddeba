"""Cross-package tests: the real `pensieve` process on a free port, real clients."""

from __future__ import annotations

import pytest
from server_process import ServerProcess, free_port, isolated_env

from pensieve_model_support.testing import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def server(tiny_model_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("server-home")
    port = free_port()
    proc = ServerProcess(
        ["--model", str(tiny_model_dir), "--port", str(port)], isolated_env(home), port, home / "server.log"
    )
    proc.wait_ready()
    yield proc
    assert proc.stop() == 0, proc.output()
