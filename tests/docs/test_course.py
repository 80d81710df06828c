"""The course (docs/course/): eight marimo notebooks that execute and check themselves.

- Every lesson runs the way a reader renders it, ``marimo export html`` in a fresh process.
  Each lesson asserts its own physics and its exercise's answer against the model (with
  tolerances, never a pasted prediction), and a failed assert or any error in a cell makes
  the export exit non-zero, so the lesson fails here when the model drifts. The exported
  page must carry at least one figure. Skipped only when marimo is not importable and
  ``HWSIM_REQUIRE_DOCS`` is unset; CI sets it, so there a missing marimo fails.
- Without marimo: every lesson has a goal, an exercise, a checked answer (asserts) and a
  plot, and ``docs/course/index.md`` links every lesson and only files that exist.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COURSE = ROOT / "docs" / "course"
LESSONS = sorted(COURSE.glob("lesson[0-9][0-9]_*.py"))


def _require_marimo() -> None:
    if importlib.util.find_spec("marimo") is None:
        if os.environ.get("HWSIM_REQUIRE_DOCS"):
            pytest.fail("HWSIM_REQUIRE_DOCS is set but marimo is not installed "
                        "(pip install -e '.[docs]')")
        pytest.skip("marimo not installed (set HWSIM_REQUIRE_DOCS to fail instead)")


def test_eight_lessons() -> None:
    assert [p.stem[:8] for p in LESSONS] == [f"lesson{i:02d}" for i in range(1, 9)]


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_structure(lesson: Path) -> None:
    """A goal, an exercise with an answer, asserts that check it, and a figure."""
    src = lesson.read_text(encoding="utf-8")
    tree = ast.parse(src)
    asserts = [n for n in ast.walk(tree) if isinstance(n, ast.Assert)]
    assert len(asserts) >= 3, f"{lesson.name}: {len(asserts)} asserts"
    for needle in ("**Goal.**", "## Exercise", "**Answer.**", "plt.subplots("):
        assert needle in src, f"{lesson.name}: no {needle!r}"
    # the answer cell must check something: an assert in the cell that prints the answer
    answer_cells = [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                    and "**Answer.**" in ast.get_source_segment(src, f)]
    assert answer_cells and any(isinstance(n, ast.Assert) for f in answer_cells
                                for n in ast.walk(f)), f"{lesson.name}: unchecked answer"


def test_index_lists_every_lesson() -> None:
    index = (COURSE / "index.md").read_text(encoding="utf-8")
    links = [u for u in re.findall(r"\]\(([^)#\s]+)", index) if "://" not in u]
    for link in links:  # relative links only (mkdocs --strict), to files that exist
        assert not link.startswith("/"), link
        assert (COURSE / link).resolve().exists(), f"index.md links a missing file: {link}"
    for lesson in LESSONS:
        assert lesson.name in links, f"index.md does not link {lesson.name}"


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_executes(lesson: Path, tmp_path: Path) -> None:
    _require_marimo()
    # run a copy: marimo writes a session cache (__marimo__/) next to the notebook
    nb = tmp_path / lesson.name
    shutil.copy(lesson, nb)
    out = tmp_path / f"{lesson.stem}.html"
    r = subprocess.run([sys.executable, "-m", "marimo", "export", "html", str(nb), "-o",
                        str(out), "-f"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})
    if r.returncode != 0:  # the export names the exception; a script run gives the traceback
        script = subprocess.run([sys.executable, str(nb)], cwd=tmp_path, capture_output=True,
                                text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})
        pytest.fail(f"{lesson.name} failed:\n{r.stderr[-2000:]}\n{script.stderr[-4000:]}")
    page = out.read_text(encoding="utf-8")
    assert "data:image/png" in page, f"{lesson.name}: no figure in the exported page"
