"""Identifiers in the API's formats."""

from __future__ import annotations

import secrets


def request_id() -> str:
    return "req_" + secrets.token_hex(12)


def message_id() -> str:
    return "msg_" + secrets.token_hex(12)
