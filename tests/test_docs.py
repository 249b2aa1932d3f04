"""The documentation site builds with no warning, and its tutorial notebook runs.

``mkdocs build --strict`` fails on any warning: a broken link or anchor in a page, a link of
the tutorial notebook to a page the site lacks (``docs/hooks/repo_pages.py``), an API
reference that does not resolve. The tutorial (``docs/tutorial.ipynb``, committed without
outputs) is executed here on its tiny simulated set, so its commands never rot.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
TUTORIAL = DOCS / "tutorial.ipynb"


def _env(**extra: str) -> dict[str, str]:
    """This interpreter's environment first on PATH, W&B offline, and ``extra``."""
    env = {**os.environ, "WANDB_MODE": "offline", "NO_MKDOCS_2_WARNING": "1", **extra}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def test_the_site_builds_with_no_warning(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        env=_env(CLOUDXFER_DOCS_EXECUTE="false"),  # the tutorial is executed below, once
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-6000:]
    # the README is the home page, its links rewritten to the site's pages and images
    home = (site / "index.html").read_text()
    assert "Quick start" in home and 'href="method/"' in home
    assert 'src="images/demo_scene_map.png"' in home
    # the how-tos, the notes and the tutorial are pages; the API reference is the docstrings'
    for page in ("howto/run-a-table", "howto/wandb", "method", "reliability", "tutorial"):
        assert (site / page / "index.html").is_file(), page
    api = (site / "api" / "cloudxfer" / "index.html").read_text()
    assert 'id="cloudxfer.irm.modality_weights"' in api
    assert 'id="cloudxfer.reporting.wandb_table.log_table"' in api
    assert (
        'id="datamodules.normalisation.compute_standardisation"'
        in (site / "api" / "datamodules" / "index.html").read_text()
    )
    tutorial = (site / "tutorial" / "index.html").read_text()
    assert 'href="../howto/run-a-table/"' in tutorial  # its Markdown links, as site URLs


def test_the_tutorial_notebook_is_committed_without_outputs() -> None:
    notebook = nbformat.read(TUTORIAL, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_the_tutorial_runs_on_tiny_data_and_renders_its_outputs(tmp_path: Path) -> None:
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    out = tmp_path / "tutorial"
    notebook = nbformat.read(TUTORIAL, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=900,  # a cell: the chain is the longest
        kernel_name="python3",
        resources={"metadata": {"path": str(DOCS)}},  # run where Jupyter would: docs/
    )
    client.execute(env=_env(CLOUDXFER_TUTORIAL_OUT=str(out), PYTHONWARNINGS="ignore"))
    # each step wrote what the notebook says it does
    for path in (
        "data/target/labels.csv",
        "results.md",
        "runs/target/checkpoints/best.ckpt",
        "runs/target_noirm/test/metrics.json",
        "fig8.png",
        "convergence.png",
        "scene/map.tif",
        "scene/map.png",
    ):
        assert (out / path).is_file(), path
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) >= 4  # Fig. 8, convergence, the metrics.csv curves, the map
    text = "".join(output.get("text", "") for output in outputs)
    assert "$ cloudxfer chain --profile smoke" in text and "OA against" in text
    # as the site renders it (`make docs` executes it the same way): the outputs, inline
    html, _ = HTMLExporter().from_notebook_node(notebook)
    assert html.count("data:image/png;base64") >= len(images)
