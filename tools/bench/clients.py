"""Minimal streaming clients (standard library only, so the benchmark runs where no extra
package can be installed): the Anthropic Messages API of pensieve and the OpenAI chat API of
mlx_lm.server, each giving the same timings for one request."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Timing:
    ttft_s: float  # request sent → first visible token
    total_s: float
    output_tokens: int
    text: str
    cached_tokens: int | None = None
    # Absolute perf_counter() times, for tools that place requests against each other.
    sent_at: float = 0.0
    headers_at: float = 0.0
    delta_times: list[float] = field(default_factory=list)  # every content_block_delta
    server_timing: str | None = None  # the response's `server-timing` header

    @property
    def decode_tps(self) -> float | None:
        decode = self.total_s - self.ttft_s
        return (self.output_tokens - 1) / decode if self.output_tokens > 1 and decode > 0 else None


def _sse(response: http.client.HTTPResponse):
    for raw in response:
        line = raw.decode().rstrip("\n")
        if line.startswith("data: "):
            yield line[6:]


def _post(
    port: int, path: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    started = time.perf_counter()
    conn.request("POST", path, json.dumps(body), {"content-type": "application/json", **headers})
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"{path} answered {response.status}: {response.read()[:500]!r}")
    return conn, response, started


def anthropic_stream(port: int, body: dict[str, Any]) -> Timing:
    conn, response, started = _post(
        port,
        "/v1/messages",
        {**body, "stream": True},
        {"x-api-key": "pensieve-local-key", "anthropic-version": "2023-06-01"},
    )
    headers = time.perf_counter()
    first = None
    text, tokens, cached, deltas = [], 0, None, []
    for data in _sse(response):
        event = json.loads(data)
        if event["type"] == "message_start":
            cached = event["message"]["usage"].get("cache_read_input_tokens")
        elif event["type"] == "content_block_delta":
            deltas.append(time.perf_counter())
            if event["delta"].get("text"):
                first = first or deltas[-1]
                text.append(event["delta"]["text"])
        elif event["type"] == "message_delta":
            tokens = event["usage"]["output_tokens"]
        elif event["type"] == "error":
            raise RuntimeError(event["error"])
    end = time.perf_counter()
    conn.close()
    return Timing(
        (first or end) - started,
        end - started,
        tokens,
        "".join(text),
        cached,
        sent_at=started,
        headers_at=headers,
        delta_times=deltas,
        server_timing=response.getheader("server-timing"),
    )


def openai_stream(port: int, body: dict[str, Any]) -> Timing:
    conn, response, started = _post(
        port, "/v1/chat/completions", {**body, "stream": True, "stream_options": {"include_usage": True}}, {}
    )
    first = None
    text, tokens, chunks, cached = [], None, 0, None
    for data in _sse(response):
        if data.strip() == "[DONE]":
            break
        event = json.loads(data)
        for choice in event.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                first = first or time.perf_counter()
                text.append(piece)
                chunks += 1
        if event.get("usage"):
            tokens = event["usage"].get("completion_tokens")
            cached = (event["usage"].get("prompt_tokens_details") or {}).get("cached_tokens")
    end = time.perf_counter()
    conn.close()
    return Timing(
        (first or end) - started, end - started, tokens if tokens is not None else chunks, "".join(text), cached
    )


def to_openai(body: dict[str, Any], *, native_tools: bool = False) -> dict[str, Any]:
    """The same conversation for an OpenAI-style server: system blocks joined (billing line
    included, as a generic server gets it), trailing system messages folded into the last
    user turn, tools as functions, or (for a template without tools, where pensieve
    describes them in the system text) the same listing in the system text, so both servers
    prefill the same amount."""

    def text_of(content: Any) -> str:
        if isinstance(content, str):
            return content
        return "".join(b.get("text", "") for b in content if b.get("type") == "text")

    system = body.get("system") or ""
    messages = (
        [{"role": "system", "content": text_of(system) if not isinstance(system, str) else system}] if system else []
    )
    for m in body["messages"]:
        if m["role"] == "system":
            messages[-1]["content"] += f"\n<system-reminder>\n{text_of(m['content'])}\n</system-reminder>"
        else:
            messages.append({"role": m["role"], "content": text_of(m["content"])})
    out: dict[str, Any] = {
        "model": "default_model",
        "messages": messages,
        "max_tokens": body["max_tokens"],
        "temperature": body.get("temperature", 0.0),
    }
    if body.get("tools") and not native_tools:
        listing = "\n".join(
            json.dumps({"name": t["name"], "description": t.get("description", ""), "input_schema": t["input_schema"]})
            for t in body["tools"]
        )
        messages[0]["content"] += "\n\n# Tools\n\nCall a tool with <tool_call>{...}</tool_call>:\n" + listing
    elif body.get("tools"):
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t["name"],
                    "description": t.get("description", ""),
                    "parameters": t["input_schema"],
                },
            }
            for t in body["tools"]
        ]
    return out
