"""Every notebook runs top to bottom (nbclient), so a broken notebook fails the suite."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_four_notebooks_present():
    assert [p.name for p in NOTEBOOKS] == ["01-formats.ipynb", "02-accumulation.ipynb", "03-scaling.ipynb",
                                           "04-oracle.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    import os

    root = str(Path(__file__).parent.parent)  # the kernel imports this checkout even when not installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    # every cell that draws a figure shows it inline, as an image in the executed notebook
    for c in nb.cells:
        if c.cell_type == "code" and "plt.subplots" in c.source:
            assert any("image/png" in o.get("data", {}) for o in c.outputs), c.source[:80]
