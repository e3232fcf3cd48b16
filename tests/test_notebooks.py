"""The example notebooks (notebooks/*.ipynb) run on the model organism and are committed executed.

Each notebook is copied into a temporary folder and executed there with nbclient (its outputs
go to ``runs/`` under that folder), so a change that breaks the public API, or what the
notebooks assert about the organism, fails here with the cell's error.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["concepts", "shift", "steering"]
MAX_BYTES = 400_000
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def kernel_manager() -> AsyncKernelManager:
    """A manager for this interpreter's own kernel.

    With no kernelspec folders to search, "python3" is ipykernel's native spec, whose command
    is ``sys.executable``: a python3 kernelspec installed elsewhere on the machine (another
    environment's) cannot stand in for this one.
    """
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))
    assert km.kernel_spec.argv[0] == sys.executable, km.kernel_spec.argv
    return km


def test_every_notebook_is_tested():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_executed(name):
    path = NOTEBOOKS / f"{name}.ipynb"
    assert path.stat().st_size < MAX_BYTES, f"{path} is {path.stat().st_size} bytes; keep it under {MAX_BYTES}"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, f"{path} has no code cell"
    counts = [cell.execution_count for cell in code]
    assert None not in counts, f"{path} has unexecuted code cells: execute it, then commit it"
    assert counts == list(range(1, len(code) + 1)), f"{path} was not executed top to bottom in one run: {counts}"
    outputs = [out for cell in code for out in cell.outputs]
    assert outputs, f"{path} has no outputs: execute it, then commit it"
    assert not [out for out in outputs if out.output_type == "error"], f"{path} was committed with an error"
    assert any("image/png" in out.get("data", {}) for out in outputs), f"{path} has no embedded figure"
    assert not [out for out in outputs if out.output_type == "stream" and out.name == "stderr"], \
        f"{path} has warnings or errors on stderr in its outputs"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, tmp_path):
    copy = tmp_path / f"{name}.ipynb"
    shutil.copy(NOTEBOOKS / copy.name, copy)
    nb = nbformat.read(copy, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    client = NotebookClient(nb, km=kernel_manager(), timeout=120, resources={"metadata": {"path": str(tmp_path)}})
    error = None
    try:
        client.execute(env=dict(os.environ, HF_HUB_OFFLINE="1"))
    except CellExecutionError as exc:  # the failing cell's source and traceback
        error = ANSI.sub("", str(exc))
    if error:
        pytest.fail(f"{name}.ipynb: a cell raised\n{error}", pytrace=False)
    assert nb.cells[-1].outputs[0]["text"].strip() == sys.executable, "the notebook ran in another interpreter"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([copy.name, "runs"]), \
        f"{name}.ipynb wrote outside runs/: {sorted(p.name for p in tmp_path.iterdir())}"
