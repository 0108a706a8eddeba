import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from pensieve_cli import cli
from pensieve_core import DEFAULT_API_KEY


@pytest.fixture(autouse=True)
def _no_real_model_stores(tmp_path, monkeypatch):
    # `pensieve models` reads Ollama's store and LM Studio's folder under the home: never the real ones.
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port():
    """Ports nothing listens on (the default 7777 may be the user's own server): call it for one."""
    return _free_port


@pytest.fixture
def run(tmp_path, monkeypatch):
    """The CLI in a home of its own, configured for a port where nothing listens."""
    monkeypatch.setenv("PENSIEVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("PENSIEVE_PORT", str(_free_port()))
    for var in ("PENSIEVE_MODEL", "PENSIEVE_API_KEY", "PENSIEVE_HOST"):
        monkeypatch.delenv(var, raising=False)

    def invoke(*args, input=None):
        return CliRunner().invoke(cli, list(args), input=input)

    return invoke


HEALTH = {
    "status": "ok",
    "uptime_s": 3.0,
    "pid": 1,
    "model": {"id": "tiny", "source": "mlx", "context_length": 131072, "fallback_from": None, "note": None},
    "device": {"kind": "cpu", "name": "cpu"},
    "memory": {"active_bytes": 0},
}
STATUS = {
    "requests": {"total": 7, "in_flight": 1, "generations": 3, "joined": 0},
    "speed": {"decode_tokens_per_s": 41.5, "ttft_s": 0.2},
    "prefix_cache": {"hits": 2, "misses": 1, "read_fraction": 0.5},
}


class StandIn:
    """A server in pensieve's place on a free port: /health public, the /v1 routes only with the
    default key; a path left out of `answers` is a 404 (`del answers["/health"]`: no server)."""

    def __init__(self) -> None:
        self.answers: dict[str, dict] = {
            "/health": HEALTH,
            "/v1/status": STATUS,
            "/v1/models?limit=1000": self.listing(tiny=131072),
        }
        self.paths: list[str] = []
        answers, paths = self.answers, self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                if self.path.startswith("/v1/") and self.headers.get("x-api-key") != DEFAULT_API_KEY:
                    code, body = 401, {"type": "error", "error": {"type": "authentication_error"}}
                elif self.path not in answers:
                    code, body = 404, {"type": "error", "error": {"type": "not_found_error"}}
                else:
                    code, body = 200, answers[self.path]
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def listing(**windows: int) -> dict:
        """GET /v1/models as pensieve answers it (the route is tested in pensieve-server): each
        listed id and its window, e.g. listing(tiny=131072, **{"claude-opus-5-5": 8192})."""
        data = [
            {"type": "model", "id": i, "display_name": i, "max_input_tokens": w, "max_tokens": w}
            for i, w in windows.items()
        ]
        return {"data": data, "has_more": False, "first_id": None, "last_id": None}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    """Start StandIns (each on its own free port), closed when the test ends."""
    servers: list[StandIn] = []

    def start() -> StandIn:
        servers.append(StandIn())
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def stand_in(run, serve, monkeypatch):
    """A StandIn where the configuration points (PENSIEVE_PORT)."""
    server = serve()
    monkeypatch.setenv("PENSIEVE_PORT", str(server.port))
    return server
