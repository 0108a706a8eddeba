"""Each package declares what it imports (tools/check_dependencies.sh, deptry), and the check
breaks when a package imports something it does not declare."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def check(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    return subprocess.run(
        [str(ROOT / "tools/check_dependencies.sh"), str(root)], env=env, capture_output=True, text=True
    )


def test_declared_dependencies_equal_imports():
    result = check(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_undeclared_import_breaks_the_check(tmp_path):
    for pkg in (ROOT / "packages").iterdir():
        shutil.copytree(pkg, tmp_path / "packages" / pkg.name, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "packages/pensieve-core/src/pensieve_core/config.py"
    target.write_text("import numpy  # injected by test\n" + target.read_text())
    result = check(tmp_path)
    assert result.returncode != 0
    assert "DEP003 'numpy' imported but it is a transitive dependency" in result.stdout + result.stderr
