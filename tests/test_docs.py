"""Every Python example of the README and of docs/ runs as written: each block alone, in a fresh interpreter, in an
empty folder (the examples write only under outputs/ there)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for k, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)):
            found.append((f"{page.relative_to(ROOT)}#{k}", code))
    return found


EXAMPLES = blocks()


def test_the_pages_have_examples():
    assert len([name for name, _ in EXAMPLES if name.startswith("README.md")]) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("code", [code for _, code in EXAMPLES], ids=[name for name, _ in EXAMPLES])
def test_an_example_runs_as_written(code, tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "MPLBACKEND": "Agg",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_every_interval_the_pages_quote_is_in_a_committed_report():
    # a measured figure is copied from a report that the runs produced, never typed from memory: in the pages and
    # in the recipes' `measured` texts
    reports = "\n".join(p.read_text() for p in (ROOT / "docs" / "experiments").glob("*/report.md"))
    quoted = set()
    for page in (*PAGES, ROOT / "hiddenmix" / "recipes.py"):
        quoted |= set(re.findall(r"[+-]\d+\.\d+ \[[+-]\d+\.\d+, [+-]\d+\.\d+\]", page.read_text()))
    missing = sorted(q for q in quoted if q not in reports)
    assert not missing, missing
