"""The layering contract (import-linter, configured in the root pyproject.toml) holds on
this tree, and breaks when a lower package imports a higher one."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def lint(src_dirs: list[Path], config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, src_dirs))}
    return subprocess.run([*LINT, "--config", str(config), "--no-cache"], env=env, capture_output=True, text=True)


def copy_tree(tmp_path: Path) -> list[Path]:
    srcs = []
    for pkg in sorted((ROOT / "packages").iterdir()):
        dest = tmp_path / pkg.name / "src"
        shutil.copytree(pkg / "src", dest, ignore=shutil.ignore_patterns("__pycache__"))
        srcs.append(dest)
    return srcs


def test_contracts_are_kept():
    result = lint([], ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, line, contract",
    [
        ("pensieve_core/config.py", "import pensieve_server", "strictly downward"),
        ("pensieve_inference/prompt.py", "import pensieve_api_models", "strictly downward"),
        ("pensieve_api_models/sse.py", "import mlx.core", "No MLX"),
    ],
)
def test_a_forbidden_import_breaks_the_check(tmp_path, module, line, contract):
    srcs = copy_tree(tmp_path)
    target = next(src / module for src in srcs if (src / module).exists())
    target.write_text(f"{line}  # injected by test\n" + target.read_text())
    result = lint(srcs, ROOT / "pyproject.toml")
    assert result.returncode != 0
    assert contract in result.stdout and "BROKEN" in result.stdout
