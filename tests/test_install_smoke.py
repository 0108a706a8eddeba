"""`uv tool install` reads overrides.txt, `uv sync` the workspace's override-dependencies: the two must
say the same, or a tool install builds llama-cpp-python. The install itself is CI's own step
(tools/ci/install_smoke.sh): it needs uv and the package index, which the suite does not."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _requirements(path):
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def test_tool_overrides_equal_the_workspace_overrides():
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["override-dependencies"]
    assert _requirements(ROOT / "overrides.txt") == workspace


def test_readme_install_lines_name_files_that_exist():
    readme = (ROOT / "README.md").read_text()
    named = re.findall(r"uv tool install (?:-e )?(\S+) .*?--overrides ([\w./-]+\.txt)", readme)
    assert named, "the README has no uv tool install line"
    for source, overrides in named:
        assert (ROOT / overrides).is_file()
        assert source == "pensieve-cli" or (ROOT / source / "pyproject.toml").is_file()
