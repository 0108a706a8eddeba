import os

import pytest

from pensieve_model_support.testing import build_tiny_model


@pytest.fixture(scope="session", autouse=True)
def pensieve_home(tmp_path_factory):
    """The servers made here keep their files (the thinking secret) in a home of their own."""
    home = tmp_path_factory.mktemp("home")
    previous = os.environ.get("PENSIEVE_HOME")
    os.environ["PENSIEVE_HOME"] = str(home)
    yield home
    if previous is None:
        del os.environ["PENSIEVE_HOME"]
    else:
        os.environ["PENSIEVE_HOME"] = previous


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def engine(tiny_model_dir):
    from pensieve_inference import MLXEngine
    from pensieve_model_support import HuggingFaceHub, resolve_reference

    engine = MLXEngine.load_sync(resolve_reference(str(tiny_model_dir)), HuggingFaceHub())
    yield engine
    engine._worker.stop()


@pytest.fixture(scope="session")
def client(engine):
    from starlette.testclient import TestClient

    from pensieve_core import Settings
    from pensieve_server import create_app

    with TestClient(create_app(engine, Settings(api_key="test-key")), base_url="http://localhost") as c:
        yield c


@pytest.fixture
def failing_midway(engine, monkeypatch):
    """Fault injection: the device is lost once the prompt is in (every forward pass after the
    first fails), whichever decoding path runs."""
    model_class = type(engine.loaded.model)
    real, calls = model_class.__call__, []

    def breaks_after_the_prompt(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("device lost")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(model_class, "__call__", breaks_after_the_prompt)
