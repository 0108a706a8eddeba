"""`pensieve open`: the status page's URL with the key in its fragment, opened in a browser."""

import json
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from pensieve_cli import cli


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("PENSIEVE_HOME", str(tmp_path / "home"))
    for var in ("PENSIEVE_PORT", "PENSIEVE_API_KEY", "PENSIEVE_HOST"):
        monkeypatch.delenv(var, raising=False)
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)

    def invoke(*args):
        result = CliRunner().invoke(cli, list(args))
        result.opened = opened
        return result

    return invoke


@pytest.fixture
def port():
    """A stand-in for the server: /health answers."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            raw = json.dumps({"status": "ok"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_open_prints_and_opens_the_page_with_the_key_in_the_fragment(run, port, monkeypatch):
    monkeypatch.setenv("PENSIEVE_API_KEY", "a key/with+signs")
    result = run("open", "--port", str(port))
    url = f"http://127.0.0.1:{port}/#key=a%20key%2Fwith%2Bsigns"
    assert result.exit_code == 0, result.output
    assert result.output.strip() == url and result.opened == [url]


def test_open_with_print_url_opens_nothing(run, port):
    result = run("open", "--port", str(port), "--print-url")
    assert result.exit_code == 0 and result.output.strip().endswith("/#key=pensieve-local-key")
    assert result.opened == []


def test_open_without_a_server_is_one_line(run):
    result = run("open", "--port", "1")
    assert result.exit_code == 1 and result.opened == []
    assert result.output.strip() == "pensieve: no server answers at http://127.0.0.1:1; start one with `pensieve start`"
