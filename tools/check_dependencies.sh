#!/usr/bin/env bash
# Each package's declared dependencies equal its imports (deptry; docs/dependencies.md says
# why): src against [project.dependencies], tests against those plus the dev group; then the
# workspace root's tests and tools.
# Usage: uv run --locked tools/check_dependencies.sh [WORKSPACE_ROOT]
set -euo pipefail
root=$(cd "${1:-$(dirname "$0")/..}" && pwd)
status=0
for pkg in "$root"/packages/*/; do
  module=$(basename "$pkg" | tr - _)
  # deptry skips folders named tests unless --exclude is given; DEP002/DEP004 do not apply to
  # tests, which may also use the workspace's tests/claude_code_body.py.
  (cd "$pkg" && deptry src --no-ansi \
    && deptry tests --no-ansi --exclude __pycache__ --ignore DEP002,DEP004 \
      --known-first-party "$module" --known-first-party claude_code_body) || status=1
done
# The workspace root: its tests and tools against its own dependencies and groups (it depends on
# pensieve-cli to install the program, which they run as a process rather than import).
if [ -d "$root/tests" ]; then
  (cd "$root" && deptry tests tools --no-ansi --exclude __pycache__ --ignore DEP002,DEP004 \
    --known-first-party server_process --known-first-party node_clients \
    --known-first-party claude_code_body --known-first-party clients \
    --known-first-party raw --known-first-party report \
    --known-first-party servers --known-first-party engine_batch --known-first-party edit_turns \
    --known-first-party burst_start \
    --package-module-name-map matplotlib=matplotlib) || status=1
fi
exit "$status"
