"""The connection test's formulas (web/js/quality-formulas.js), unit-tested with node's own test
runner: `node --test web/js/quality-formulas.test.mjs`. This wrapper lets `make test` run them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

NODE = shutil.which("node")
TESTS = Path(__file__).resolve().parents[1] / "web" / "js" / "quality-formulas.test.mjs"


@pytest.mark.skipif(NODE is None, reason="needs node (20+) for its built-in test runner")
def test_quality_formulas_pass_their_node_unit_tests() -> None:
    assert NODE is not None
    result = subprocess.run(
        [NODE, "--test", str(TESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=TESTS.parent,
    )
    summary = [line for line in result.stdout.splitlines() if line.startswith("# ")]
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    assert "# fail 0" in summary, summary
    passed = next(line for line in summary if line.startswith("# pass"))
    assert int(passed.split()[-1]) >= 10, summary
