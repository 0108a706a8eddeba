"""Thinking signatures: an HMAC of the thinking text with a secret made once per install, so a
thinking block that comes back in a later request can be checked as ours and unaltered.

A block sent with display "omitted" has empty text; its signature is the thinking's SHA-256
followed by an HMAC of that digest, so the block comes back (text still empty) as ours. It
certifies that this install wrote that thinking; the thinking itself is not kept, and is not
needed: thinking blocks are never replayed to the model."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from pensieve_claude_types import MessageParam, ThinkingBlockParam
from pensieve_core.errors import InvalidRequestError

SECRET_FILE = "thinking-secret"


def install_secret(home: Path) -> bytes:
    """The install's secret, created (readable by its owner only) on first use."""
    path = home / SECRET_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        pass
    home.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret.hex())
    os.replace(tmp, path)
    return secret


class ThinkingSigner:
    """Signs with `secret`, or with the install's secret under `home`, read (or made) the first
    time a thinking block is signed or checked: a server that never sees one writes nothing."""

    def __init__(self, secret: bytes | None = None, *, home: Path | None = None) -> None:
        if secret is None and home is None:
            raise ValueError("a signer needs a secret or a home to keep one in")
        self._secret = secret
        self._home = home

    def _key(self) -> bytes:
        if self._secret is None:
            assert self._home is not None
            self._secret = install_secret(self._home)
        return self._secret

    def sign(self, thinking: str) -> str:
        digest = hmac.new(self._key(), thinking.encode("utf-8"), hashlib.sha256).digest()
        return base64.b64encode(digest).decode("ascii")

    def sign_omitted(self, thinking: str) -> str:
        """The signature of a block whose text is not shown (sent, and sent back, as "")."""
        digest = hashlib.sha256(thinking.encode("utf-8")).digest()
        return base64.b64encode(digest + self._omitted_mac(digest)).decode("ascii")

    def _omitted_mac(self, digest: bytes) -> bytes:
        # Its own prefix, so an omitted signature can never pass as the HMAC of some shown text.
        return hmac.new(self._key(), b"omitted\0" + digest, hashlib.sha256).digest()

    def verify(self, thinking: str, signature: str) -> bool:
        if thinking == "":
            try:
                raw = base64.b64decode(signature, validate=True)
            except ValueError:
                return False
            if len(raw) == 64:
                return hmac.compare_digest(self._omitted_mac(raw[:32]), raw[32:])
        return hmac.compare_digest(self.sign(thinking), signature)

    def check(self, messages: list[MessageParam]) -> None:
        """Every thinking block sent back must carry the signature we gave it."""
        for i, message in enumerate(messages):
            if isinstance(message.content, str):
                continue
            for j, block in enumerate(message.content):
                if isinstance(block, ThinkingBlockParam) and not self.verify(block.thinking, block.signature):
                    raise InvalidRequestError(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
