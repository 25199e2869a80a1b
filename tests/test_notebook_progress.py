"""Progress in a Jupyter kernel: toolkit code run inside a notebook cell shows one output per
stage redrawn in place (no widgets), with the epochs' lines, not a stream of lines."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from examples.run_notebook import execute
from tests.conftest import write_recipe
from tests.test_search import SEARCH
from toolkit.demo import DemoCompetition

RUN_CELL = """\
from toolkit.recipe.loading import load_recipe
from toolkit.workflow import run_study

result = run_study(load_recipe({recipe!r}, [], {output!r}))
print("submission", result.submission.name)
"""

EPOCH = re.compile(r"^trial (\d) epoch (\d)/2 loss \d+\.\d+ acc \d+\.\d+ val_loss ", re.M)
BAR = re.compile(r"━+ (\d+)/(\d+)")


def notebook(path: Path, source: str) -> Path:
    """A one-cell notebook at ``path`` running ``source``."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_a_study_in_a_notebook_cell_redraws_one_output_per_stage(
    tiny_competition: DemoCompetition, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOOLKIT_NO_PROGRESS", raising=False)  # the kernel inherits this env
    search = SEARCH.format(n_trials=2, sampler="random", pruner="{name: none}")
    recipe = write_recipe(tmp_path, tiny_competition.root, extra=search)
    source = RUN_CELL.format(recipe=str(recipe), output=str(tmp_path / "run"))
    client = execute(notebook(tmp_path / "progress.ipynb", source), cwd=tmp_path, timeout=600)

    outputs = client.nb.cells[0].outputs
    assert not [o for o in outputs if o.output_type == "error"], outputs
    texts = [o.data["text/plain"] for o in outputs if o.output_type == "display_data"]
    bars = [t for t in texts if BAR.search(t)]
    # one output per stage, redrawn in place: at least once per bar, and at each epoch
    assert client.messages["update_display_data"] >= len(bars) + 4
    # each bar's output ends complete, its epochs' lines above it as a terminal keeps them
    for text in bars:
        done, total = BAR.findall(text)[-1]
        assert done == total, text
    training = [t for t in bars if t.splitlines()[-1].startswith("trial ")]
    epochs = sorted(m.groups() for t in training for m in EPOCH.finditer(t))
    assert epochs == [("0", "1"), ("0", "2"), ("1", "1"), ("1", "2")], training
    assert all(t.count("\n") == 2 and "━" not in t.splitlines()[0] for t in training), training
    # the study's live status is one output too, left showing the final count
    assert sum("2/2 finished" in t for t in texts) == 1, texts
    # no count lines printed as a log would, and few outputs in all (not a line per step)
    assert not [t for t in texts if re.search(r"\d+/\d+ \(\d+%\)", t)], texts
    assert len(outputs) <= 25, [o.get("data", o.get("text")) for o in outputs]
    assert "submission submission.csv" in "".join(o.get("text", "") for o in outputs)


def test_the_runner_prints_each_cell_s_seconds_and_fails_at_a_cell_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples.run_notebook import main

    good = notebook(tmp_path / "good.ipynb", "import toolkit\nprint(toolkit.__version__)")
    assert main([str(good)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^cell 0: \d+\.\d s  import toolkit$", out, re.M), out
    assert re.search(r"good\.ipynb: 1 cells ran in \d+\.\d s$", out, re.M), out

    bad = nbformat.v4.new_notebook()
    bad.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("x / 0")]
    nbformat.write(bad, tmp_path / "bad.ipynb")
    assert main([str(tmp_path / "bad.ipynb")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"error: {tmp_path / 'bad.ipynb'}: a cell raised ZeroDivisionError: " + (
        "division by zero"
    ), err[-3:]
    assert main([str(tmp_path / "missing.ipynb")]) == 2
