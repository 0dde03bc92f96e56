"""The demo notebooks (notebooks/*.ipynb) run top to bottom in a fresh kernel on the tiny world, as a reader would
run them. Each notebook asserts its own key facts, so a broken pipeline fails here. State goes to a temporary
NEWSREC_VAR_DIR; a process a notebook leaves behind fails the test. Committed notebooks carry no outputs."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
EXECUTED = ("01_news_world.ipynb", "02_train_evaluate.ipynb", "03_serve_query.ipynb", "04_freshness.ipynb",
            "05_load_test.ipynb")
CELL_TIMEOUT_S = 240
LEFTOVER_WAIT_S = 20.0  # processes stopped at kernel exit (atexit, or SIGTERM from the kernel's death) need a moment


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state directory for the module: notebook 03 serves the model notebook 02 trained, as for a reader."""
    return tmp_path_factory.mktemp("notebook-var")


def _processes_using(path: Path) -> list[int]:
    """PIDs whose command line or working directory lies under `path` (a directory unique to this test run)."""
    found, mark = [], str(path)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (mark in cmdline or cwd.startswith(mark)):
            found.append(int(entry.name))
    return found


def _leftovers(path: Path) -> list[int]:
    deadline = time.monotonic() + LEFTOVER_WAIT_S
    while (left := _processes_using(path)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.mark.slow
@pytest.mark.timeout(CELL_TIMEOUT_S + 120)
@pytest.mark.parametrize("name", EXECUTED)
def test_notebook_runs_on_the_tiny_world(name: str, var_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSREC_PRESET", "tiny")
    monkeypatch.setenv("NEWSREC_VAR_DIR", str(var_dir))  # the kernel inherits this process's environment
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    try:
        client.execute()  # raises CellExecutionError with the failing cell and its traceback
    finally:
        left = _leftovers(var_dir)
        for pid in left:  # started by this notebook: they name our temporary directory
            os.kill(pid, signal.SIGKILL)
    assert not left, f"{name} left processes running: {left}"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebook_is_clean(path: Path) -> None:
    """No outputs or execution counts in git (they would bloat diffs and go stale); first cell says what it shows."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} cell {i} has outputs"
    assert nb.metadata["kernelspec"]["name"] == "python3"
