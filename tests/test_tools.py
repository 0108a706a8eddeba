"""Everything under tools/ at least compiles, so a benchmark cannot rot unnoticed (bench.py once
failed to compile for a whole session); head_of_line.py also has a --smoke mode of seconds."""

import py_compile
from pathlib import Path

import pytest

TOOLS = sorted((Path(__file__).resolve().parents[1] / "tools").rglob("*.py"))


def test_there_are_tools_to_check():
    assert len(TOOLS) >= 5


@pytest.mark.parametrize("path", TOOLS, ids=lambda p: p.name)
def test_tool_compiles(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)
