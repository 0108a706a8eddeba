#!/usr/bin/env bash
# The eight wheels as a user gets them: `uv build --all-packages`, `uv tool install` into a clean tool
# directory, then from outside the checkout, offline, with a fresh home: --help, validate, a background
# server on a free port that answers one request with the bundled SmolLM2, stop. About 15 s on 2 cores.
# Usage: tools/ci/install_smoke.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
work=$(mktemp -d)
home="$work/home"
mkdir -p "$home"
bin="$work/bin"
pensieve() {
  # Nothing from the caller's environment or home: only the tool's own directory on the PATH.
  env -i PATH="$bin:/usr/bin:/bin" HOME="$home" PENSIEVE_HOME="$home/.pensieve" HF_HUB_OFFLINE=1 \
    "$bin/pensieve" "$@"
}
cleanup() {
  local status=$?
  if [ "$status" -ne 0 ] && [ -f "$home/.pensieve/logs/pensieve.log" ]; then
    tail -20 "$home/.pensieve/logs/pensieve.log" >&2
  fi
  if [ -f "$home/.pensieve/pensieve.pid" ]; then
    (cd "$work" && pensieve stop --timeout 5) || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "-- uv build --all-packages"
uv build --all-packages --quiet -o "$work/wheels"
# Every file under each package's src/ (status.html, py.typed, the modules) is in its wheel.
python3 - "$root" "$work/wheels" <<'EOF'
import sys, zipfile
from pathlib import Path

root, wheels = Path(sys.argv[1]), Path(sys.argv[2])
built = sorted(wheels.glob("*.whl"))
assert len(built) == 8, f"expected 8 wheels, got {[w.name for w in built]}"
for src in sorted(root.glob("packages/*/src")):
    (wheel,) = wheels.glob(src.parent.name.replace("-", "_") + "-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    wanted = {
        p.relative_to(src).as_posix()
        for p in src.rglob("*")
        if p.is_file() and p.suffix != ".pyc" and not any(part.startswith((".", "__pycache__")) for part in p.parts)
    }
    assert wanted <= inside, f"{wheel.name} lacks {sorted(wanted - inside)}"
print(f"ok   {len(built)} wheels, each with all of its package's files")
EOF

echo "-- uv tool install pensieve-cli --find-links <wheels> --overrides overrides.txt"
UV_TOOL_DIR="$work/tools" UV_TOOL_BIN_DIR="$bin" uv tool install --quiet pensieve-cli \
  --find-links "$work/wheels" --overrides "$root/overrides.txt"

cd "$work"  # away from the checkout, as a user's own project would be
pensieve --help >/dev/null
pensieve validate --model smollm2-135m
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pensieve start --daemon --model smollm2-135m --port "$port"
pid=$(cat "$home/.pensieve/pensieve.pid")
"$work/tools/pensieve-cli/bin/python" - "$port" <<'EOF'
import json, sys, urllib.request

body = {"model": "smollm2-135m", "max_tokens": 3, "messages": [{"role": "user", "content": "Say hi"}]}
request = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/v1/messages",
    json.dumps(body).encode(),
    {"x-api-key": "pensieve-local-key", "content-type": "application/json", "anthropic-version": "2023-06-01"},
)
answer = json.loads(urllib.request.urlopen(request, timeout=120).read())
assert answer["type"] == "message" and answer["usage"]["output_tokens"] > 0, answer
print(f"ok   answered {answer['content'][0]['text']!r} ({answer['stop_reason']})")
EOF
pensieve stop
if kill -0 "$pid" 2>/dev/null; then
  echo "the server (pid $pid) is still running after pensieve stop" >&2
  exit 1
fi
echo "ok   stopped; pid $pid is gone"
