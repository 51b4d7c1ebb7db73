"""ruff over the whole repository, with the rules pyproject.toml's [tool.ruff] selects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).parent / "ruff"  # installed from requirements-dev.txt, next to pytest
    assert ruff.exists(), f"{ruff} is missing: pip install -r requirements-dev.txt"
    result = subprocess.run([str(ruff), "check", "--no-cache", "--output-format", "concise", "."], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"ruff check . (exit {result.returncode}):\n{result.stdout}{result.stderr}", pytrace=False)
