"""One mapping from errors to HTTP: no source outside the error tree writes an Anthropic error
type by hand, so no (status, type) pair can drift from the tree."""

import ast
from pathlib import Path

from pensieve_core import errors

ROOT = Path(__file__).resolve().parents[1]
TREE_MODULE = ROOT / "packages/pensieve-core/src/pensieve_core/errors.py"
# The API's whole list of error types, not only those the tree uses today.
API_TYPES = {
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "timeout_error",
    "overloaded_error",
}


def hand_written_error_types(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        f"{path.relative_to(root)}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in API_TYPES
    ]


def test_only_the_tree_names_error_types():
    found = [
        hit
        for path in sorted(ROOT.glob("packages/*/src/**/*.py"))
        if path != TREE_MODULE
        for hit in hand_written_error_types(path)
    ]
    assert found == []


def test_the_check_finds_a_hand_written_pair(tmp_path):
    bad = tmp_path / "hardening.py"
    bad.write_text('"""Draining: overloaded_error."""\nawait send_error(scope, send, 503, "overloaded_error", "bye")\n')
    assert hand_written_error_types(bad, tmp_path) == ["hardening.py:2: 'overloaded_error'"]


def test_the_tree_uses_only_api_types():
    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, errors.PensieveError)]
    assert {cls.error_type for cls in classes} <= API_TYPES
