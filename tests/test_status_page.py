"""The status page in a real browser (Debian's headless Chromium) against the real server: it
loads the numbers with the key from the URL's fragment, and they move while a request runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path

import httpx2 as httpx
import pytest

KEY = "pensieve-local-key"
LONG = {
    "model": "tiny",
    "max_tokens": 3000,
    "temperature": 0,
    "stream": True,
    "messages": [{"role": "user", "content": "Go on"}],
}
SHORT = {"model": "tiny", "max_tokens": 5, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium for the headless browser (apt-get install chromium; CI has it)"
)


class _Texts(HTMLParser):
    """The text inside each element with an id, and the <body>'s attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: dict[str, str] = {}
        self.body: dict[str, str | None] = {}
        self.hidden: set[str] = set()
        self._open: list[tuple[str | None, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "body":
            self.body = named
        if tag in ("input", "meta", "link", "br", "img"):
            return
        self._open.append((named.get("id"), tag))
        if named.get("id") and "hidden" in named:
            self.hidden.add(str(named["id"]))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()[1] == tag:
                break

    def handle_data(self, data: str) -> None:
        for element_id, _ in self._open:
            if element_id:
                self.texts[element_id] = self.texts.get(element_id, "") + data


def page(url: str, profile: Path, *, budget_ms: int = 3000) -> _Texts:
    """The page's DOM once its script has polled for `budget_ms` of virtual time."""
    done = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    parsed = _Texts()
    parsed.feed(done.stdout)
    assert parsed.body, done.stdout[:2000]
    return parsed


def number(text: str) -> int:
    return int(text.split("(")[0].replace(",", "").strip())


def test_page_without_the_key_shows_only_what_health_does(server, tmp_path):
    health = httpx.get(server.url + "/health", timeout=10).json()
    dom = page(server.url + "/", tmp_path / "profile")
    assert dom.body["data-source"] == "health"
    assert health["model"]["id"] in dom.texts["models"]
    assert "key-card" not in dom.hidden
    # Nothing /health does not show: no requests, no counts.
    assert dom.texts["tokens-out"] == "–" and "running" not in dom.texts and "recent" not in dom.texts


def test_page_loads_the_status_and_its_numbers_move_during_a_request(server, tmp_path):
    url = f"{server.url}/#key={KEY}"
    model_id = httpx.get(server.url + "/health", timeout=10).json()["model"]["id"]
    before = page(url, tmp_path / "before")
    assert before.body["data-source"] == "status", "the page read /v1/status with the key from the fragment"
    assert model_id in before.texts["models"]
    assert "key-card" in before.hidden
    output_before = number(before.texts["tokens-out"])

    streaming = threading.Event()
    leave = threading.Event()

    def long_request() -> None:
        headers = {"x-api-key": KEY}
        with (
            httpx.Client(timeout=60) as client,
            client.stream("POST", server.url + "/v1/messages", headers=headers, json=LONG) as r,
        ):
            for chunk in r.iter_bytes():
                if b"content_block_delta" in chunk:
                    streaming.set()
                    leave.wait(60)
                    return  # leaving mid-stream cancels the generation

    worker = threading.Thread(target=long_request)
    worker.start()
    try:
        assert streaming.wait(60), "the long request never streamed"
        during = page(url, tmp_path / "during")
    finally:
        leave.set()
        worker.join(60)
    # 3,000 tokens take several seconds here: the page saw the request decoding, tokens counted.
    assert "decoding" in during.texts["running"], during.texts.get("running")
    assert "nothing running" not in during.texts["running"]
    assert during.texts["rate-1m"] not in ("–", "0.0")
    assert during.texts["in-flight-count"] == "(1)"

    r = httpx.post(server.url + "/v1/messages", headers={"x-api-key": KEY}, json=SHORT, timeout=30)
    assert r.status_code == 200
    after = page(url, tmp_path / "after")
    assert after.texts["running"] == "nothing running"
    assert number(after.texts["tokens-out"]) == output_before + r.json()["usage"]["output_tokens"]
    recent = after.texts["recent"]
    assert "end_turn" in recent or "max_tokens" in recent
    assert "cancelled" in recent  # the long request, left mid-stream


@contextmanager
def stand_in(answers: dict[str, tuple[str, bytes]]) -> Iterator[str]:
    """A server in pensieve's place that answers each path with a fixed body; its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path not in answers:  # a browser's favicon.ico
                self.send_error(404)
                return
            kind, body = answers[self.path]
            self.send_response(200)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_page_shows_how_far_a_long_prefill_is(server, tmp_path):
    """The server's own answer with one request mid-prefill added (/v1/status's side is tested in
    pensieve-server's test_status_page.py), from a stand-in: the page is caught at that moment."""
    status = httpx.get(server.url + "/v1/status", headers={"x-api-key": KEY}, timeout=10).json()
    status["running"] = [
        {"request_id": "req_0123456789abcdef", "model": "tiny", "phase": "prefill", "age_s": 12.0,
         "prompt_tokens": 12000, "cache_read_tokens": 0, "prefill_done": 5244, "prefill_percent": 43.7,
         "output_tokens": 0, "ttft_s": None},
    ]  # fmt: skip
    html = files("pensieve_server").joinpath("static", "status.html").read_bytes()
    answers = {"/": ("text/html", html), "/v1/status": ("application/json", json.dumps(status).encode())}
    with stand_in(answers) as url:
        dom = page(f"{url}/#key={KEY}", tmp_path / "profile")
    assert dom.body["data-source"] == "status"
    assert "prefill 43%" in dom.texts["running"], dom.texts["running"]
