"""Binding a taken port is one clear error, and leaves no socket open behind it."""

import gc
import socket
import warnings

import pytest

from pensieve_core import Settings
from pensieve_core.errors import ConfigError
from pensieve_server.serve import bind


def test_a_taken_port_is_a_config_error_that_leaks_no_socket():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}: the port is in use"):
                bind(Settings(port=port))
            gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
