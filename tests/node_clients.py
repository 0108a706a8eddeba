"""The JavaScript clients (the TypeScript SDK and Claude Code), installed by the test setup
from tests/node/package.json with npm."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"
CLAUDE = NODE_DIR / "node_modules" / ".bin" / "claude"


def install_node_clients() -> Path:
    if not (NODE_DIR / "node_modules" / "@anthropic-ai" / "sdk").exists() or not CLAUDE.exists():
        npm = shutil.which("npm")
        if npm is None:
            if os.environ.get("CI"):
                raise AssertionError("npm is needed for the JavaScript client tests")
            pytest.skip("Node.js and npm are not installed: JavaScript client tests skipped")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=600)
    return NODE_DIR


def claude_env(base_url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE"))}
    env.update(
        ANTHROPIC_BASE_URL=base_url,
        ANTHROPIC_AUTH_TOKEN="pensieve-local-key",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        HOME=str(home),
    )
    return env
