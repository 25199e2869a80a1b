"""A catalogue of user mistakes, one per case, each run through the ``toolkit`` command.

Every case must exit with code 2, print no traceback and one line at most that
names the file or key at fault; and no case may lose finished work: the files
of an earlier run, its cache and its leaderboard rows are the same afterwards.
The cases run in this process (typer's runner, the real command and library);
``test_cli.py`` runs the clip cases as subprocesses, where the decoder's own
output on file descriptor 2 would show.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.conftest import run_cli, write_recipe
from toolkit.cli.app import app
from toolkit.demo import DemoCompetition, make_demo_competition
from toolkit.leaderboard.store import Leaderboard
from toolkit.recipe.loading import load_recipe
from toolkit.workflow import run

pytestmark = pytest.mark.slow  # the catalogue starts from a trained run

CaseFn = Callable[["Workspace", Path], tuple[list[Any], list[str]]]
CASES: dict[str, CaseFn] = {}


def case(func: CaseFn) -> CaseFn:
    """Add a case: it prepares its folder and returns (command arguments, words the line names)."""
    CASES[func.__name__.removeprefix("case_")] = func
    return func


@dataclass
class Workspace:
    """A work folder with a finished run, its cache and leaderboard, shared by every case."""

    dir: Path
    competition: Path

    def recipe(self, folder: Path, extra: str = "", root: Path | None = None) -> Path:
        """The tiny recipe in ``folder``, on the workspace's cache and leaderboard."""
        path = write_recipe(folder, root or self.competition, extra=extra)
        text = path.read_text()
        text = text.replace(str(folder / "cache"), str(self.dir / "cache"))
        text = text.replace(str(folder / "leaderboard.db"), str(self.dir / "leaderboard.db"))
        path.write_text(text)
        return path

    def broken_copy(self, folder: Path) -> Path:
        """A private copy of the competition, to break."""
        return Path(shutil.copytree(self.competition, folder / "comp"))

    def run_args(self, folder: Path, extra: str = "", root: Path | None = None) -> list[Any]:
        """``run RECIPE --output DIR`` for a recipe with ``extra`` lines."""
        return ["run", self.recipe(folder, extra, root), "--output", folder / "out"]


# ------------------------------------------------------------------- recipes
@case
def case_recipe_file_missing(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ["run", d / "nope.yaml"], ["nope.yaml", "not found"]


@case
def case_recipe_yaml_syntax(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    (d / "r.yaml").write_text("name: x\ntrain: {epochs: 3\n")
    return ["run", d / "r.yaml"], ["r.yaml", "line", "invalid YAML"]


@case
def case_recipe_not_a_mapping(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    (d / "r.yaml").write_text("- name: x\n")
    return ["run", d / "r.yaml"], ["r.yaml", "mapping"]


@case
def case_recipe_unknown_section(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d, "trian: {epochs: 1}\n"), ["recipe.yaml", "trian", "'train'"]


@case
def case_recipe_missing_name(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    path = ws.recipe(d)
    path.write_text(path.read_text().replace("name: tiny\n", ""))
    return ["run", path], ["recipe.yaml", "name"]


@case
def case_recipe_bad_name(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    path = ws.recipe(d)
    path.write_text(path.read_text().replace("name: tiny", "name: my run"))
    return ["run", path], ["recipe.yaml", "name"]


@case
def case_recipe_wrong_type(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d) + ["--set", "train.epochs=many"], ["train.epochs", "many"]


@case
def case_recipe_out_of_range(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d) + ["--set", "train.epochs=0"], ["train.epochs", "greater than"]


@case
def case_recipe_engine_key_typo(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d) + ["--set", "train.epocs=3"], ["train.epocs", "'epochs'"]


@case
def case_recipe_bad_split(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d) + ["--set", "split.test_size=1.5"], ["split.test_size"]


@case
def case_unknown_separator(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d) + ["--set", "separator.name=spleter"], ["separator", "'spleeter'"]


@case
def case_unknown_backbone(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d) + ["--set", "model.backbone.name=resnet81"], [
        "model.backbone",
        "resnet18",
    ]


@case
def case_unknown_augmenter(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d) + ["--set", "augmenters.2.name=mixap"], ["augmenters[2]", "'mixup'"]


@case
def case_plugin_parameter_typo(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d) + ["--set", "features.n_melz=3"], ["features", "n_melz", "'n_mels'"]


@case
def case_plugin_parameter_type(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d) + ["--set", "features.n_mels=lots"], ["features", "n_mels", "lots"]


@case
def case_plugin_block_without_name(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d) + ["--set", "features={n_mels: 32}"], ["features", "name"]


@case
def case_plugin_file_missing(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d, "plugins: [mynet.py]\n"), ["mynet.py", "not found"]


@case
def case_plugin_file_syntax_error(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    (d / "mynet.py").write_text("def broken(:\n")
    return ws.run_args(d, "plugins: [mynet.py]\n"), ["mynet.py", "SyntaxError"]


@case
def case_plugin_file_unknown_hook(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    (d / "mynet.py").write_text(
        "from toolkit import hookimpl\n@hookimpl\ndef register_backbone(register):\n    pass\n"
    )
    return ws.run_args(d, "plugins: [mynet.py]\n"), ["mynet.py", "register_backbone"]


@case
def case_plugin_name_twice(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    (d / "dup.py").write_text(
        "from toolkit import hookimpl\n@hookimpl\ndef register_backbones(register):\n"
        "    register('resnet18', lambda num_classes, in_channels: None)\n"
    )
    return ws.run_args(d, "plugins: [dup.py]\n"), ["dup.py", "resnet18", "twice"]


# ----------------------------------------------------------------- overrides
@case
def case_set_without_equals(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d) + ["--set", "train.epochs"], ["--set", "KEY=VALUE"]


@case
def case_set_list_index_out_of_range(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d) + ["--set", "augmenters.9.alpha=1"], ["augmenters.9", "no item 9"]


@case
def case_set_into_a_value(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d) + ["--set", "train.epochs.x=1"], ["train.epochs", "not a mapping"]


# -------------------------------------------------------------------- search
SPACE = "search:\n  n_trials: 2\n  space:\n    {key}: {dist}\n"


@case
def case_split_folds_zero(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d) + ["--set", "split.folds=0"], ["split.folds", "greater than"]


@case
def case_split_more_folds_than_clips(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d) + ["--set", "split.folds=500"], ["split.folds", "500 folds of 32 clips"]


@case
def case_class_names_unknown_label(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    args = ws.run_args(d) + ["--set", "data.class_names={0: no voice, 7: choir}"]
    return args, ["data.class_names", "'7'", "train.csv", "0, 1, 2, 3"]


@case
def case_class_names_not_a_mapping(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    args = ws.run_args(d) + ["--set", "data.class_names=[no voice, male]"]
    return args, ["data.class_names", "dictionary"]


@case
def case_group_column_missing(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    args = ws.run_args(d) + ["--set", "data.group_column=song"]
    return args, ["train.csv", "song", "data.group_column"]


@case
def case_tta_with_a_training_augmenter(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    args = ws.run_args(d) + ["--set", "predict.tta=[{name: mixup}]"]
    return args, ["predict.tta[0]", "mixup", "TestTimeAugmenter"]


@case
def case_search_space_typo(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    extra = SPACE.format(key="model.backbone.widht", dist="{choices: [4, 8]}")
    return ws.run_args(d, extra), ["search.space", "widht", "'width'"]


@case
def case_search_space_forbidden_key(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    extra = SPACE.format(key="data.duration", dist="{low: 1.0, high: 2.0}")
    return ws.run_args(d, extra), ["search.space", "data.duration"]


@case
def case_search_space_bad_range(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    extra = SPACE.format(key="train.optimizer.lr", dist="{low: 0.1, high: 0.01}")
    return ws.run_args(d, extra), ["train.optimizer.lr", "low"]


@case
def case_search_unknown_metric(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    extra = "search: {n_trials: 2, metric: f1}\n"
    return ws.run_args(d, extra), ["search.metric", "f1"]


@case
def case_worker_without_search(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ["worker", ws.recipe(d)], ["recipe.yaml", "search"]


@case
def case_storage_without_search(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d) + ["--storage", "sqlite:///x.db"], ["--storage", "search"]


# ----------------------------------------------------------------- the data
@case
def case_data_root_missing(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ws.run_args(d, root=d / "nowhere"), ["nowhere", "data.root"]


@case
def case_train_csv_missing(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    root = ws.broken_copy(d)
    (root / "train.csv").unlink()
    return ws.run_args(d, root=root), ["train.csv", "not found"]


@case
def case_train_csv_empty(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    root = ws.broken_copy(d)
    (root / "train.csv").write_text("id,category\n")
    return ws.run_args(d, root=root), ["train.csv", "no rows"]


@case
def case_train_csv_label_column_missing(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    root = ws.broken_copy(d)
    text = (root / "train.csv").read_text()
    (root / "train.csv").write_text(text.replace("id,category", "id,categroy", 1))
    return ws.run_args(d, root=root), ["train.csv", "'category'", "'categroy'"]


@case
def case_train_csv_duplicate_id(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    root = ws.broken_copy(d)
    lines = (root / "train.csv").read_text().splitlines()
    (root / "train.csv").write_text("\n".join([*lines, lines[1]]) + "\n")
    return ws.run_args(d, root=root), ["train.csv", repr(lines[1].split(",")[0]), "more than once"]


@case
def case_train_csv_empty_label(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    root = ws.broken_copy(d)
    lines = (root / "train.csv").read_text().splitlines()
    clip = lines[3].split(",")[0]
    lines[3] = f"{clip},"
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return ws.run_args(d, root=root), ["train.csv", repr(clip), "empty"]


@case
def case_train_csv_one_class(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    root = ws.broken_copy(d)
    lines = (root / "train.csv").read_text().splitlines()
    fixed = [lines[0]] + [f"{line.split(',')[0]},1" for line in lines[1:]]
    (root / "train.csv").write_text("\n".join(fixed) + "\n")
    return ws.run_args(d, root=root), ["train.csv", "two classes"]


@case
def case_train_csv_label_typo_once(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    root = ws.broken_copy(d)
    lines = (root / "train.csv").read_text().splitlines()
    clip = lines[5].split(",")[0]
    lines[5] = f"{clip},x"
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return ws.run_args(d, root=root), ["train.csv", "label 'x'", repr(clip), "split.stratify"]


@case
def case_train_id_without_audio(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    root = ws.broken_copy(d)
    victim = sorted((root / "train").iterdir())[7]
    victim.unlink()
    return ws.run_args(d, root=root), ["train.csv", repr(victim.stem), "no audio file"]


@case
def case_test_folder_missing(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    root = ws.broken_copy(d)
    shutil.rmtree(root / "test")
    return ws.run_args(d, root=root), [str(root / "test"), "not found"]


@case
def case_sample_submission_columns(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    root = ws.broken_copy(d)
    sub = root / "sample_submission.csv"
    lines = sub.read_text().splitlines()
    lines = [lines[0] + ",extra"] + [line + ",0" for line in lines[1:]]
    sub.write_text("\n".join(lines) + "\n")
    return ws.run_args(d, root=root), [str(sub), "columns"]


@case
def case_sample_submission_duplicate_id(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    root = ws.broken_copy(d)
    sub = root / "sample_submission.csv"
    lines = sub.read_text().splitlines()
    sub.write_text("\n".join([*lines, lines[2]]) + "\n")
    return ws.run_args(d, root=root), ["sample_submission.csv", "more than once"]


@case
def case_test_id_without_audio(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    root = ws.broken_copy(d)
    victim = sorted((root / "test").iterdir())[2]
    victim.unlink()
    return ws.run_args(d, root=root), ["sample_submission.csv", repr(victim.stem)]


@case
def case_corrupt_mp3(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    root = ws.broken_copy(d)
    victim = next(p for p in sorted((root / "train").iterdir()) if p.suffix == ".mp3")
    victim.write_bytes(np.random.default_rng(0).bytes(20_000))
    return ws.run_args(d, root=root), [victim.name, "cannot decode", "not an audio file"]


@case
def case_empty_file(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    root = ws.broken_copy(d)
    victim = sorted((root / "train").iterdir())[-1]
    victim.write_bytes(b"")
    return ws.run_args(d, root=root), [victim.name, "empty file"]


@case
def case_clip_without_samples(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    root = ws.broken_copy(d)
    victim = sorted((root / "test").iterdir())[0]
    victim.unlink()
    victim = victim.with_suffix(".wav")
    sf.write(victim, np.zeros((0, 1), dtype=np.float32), 16000)
    return ws.run_args(d, root=root), [victim.name, "0 samples"]


@case
def case_demo_parameters_differ(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    make_demo_competition(d / "demo", n_train=8, n_test=2, seed=0, duration=0.5)
    extra = "data: {demo: {folder: %s, n_train: 9, n_test: 2, duration: 0.5}}\n" % (d / "demo")
    path = ws.recipe(d)
    text = path.read_text()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("data:"))
    path.write_text(text + "\n" + extra)
    return ["run", path, "--output", d / "out"], ["data.demo", "n_train"]


# ------------------------------------------------------------------- outputs
@case
def case_output_under_a_file(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    (d / "afile").write_text("x")
    args = ["run", ws.recipe(d), "--output", d / "afile" / "run"]
    return args, ["--output", str(d / "afile")]


@case
def case_cache_under_a_file(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    (d / "afile").write_text("x")
    return ws.run_args(d) + ["--set", f"cache.dir={d / 'afile' / 'c'}"], ["cache.dir", "afile"]


@case
def case_leaderboard_is_a_folder(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    (d / "board").mkdir()
    args = ws.run_args(d) + ["--set", f"output.leaderboard={d / 'board'}"]
    return args, ["output.leaderboard", "folder"]


# ---------------------------------------------------------- other commands
@case
def case_separate_recipe_typo(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ["separate", ws.recipe(d), "--set", "separator.stme=vocals"], ["separator", "stme"]


@case
def case_leaderboard_unknown_sort(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    args = ["leaderboard", "--db", ws.dir / "leaderboard.db", "--sort", "val_acc"]
    return args, ["val_acc", "'val_accuracy'"]


@case
def case_leaderboard_unknown_state(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    args = ["leaderboard", "--db", ws.dir / "leaderboard.db", "--state", "done"]
    return args, ["'done'", "complete"]


@case
def case_leaderboard_record_unknown_id(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    args = ["leaderboard", "--db", ws.dir / "leaderboard.db", "record", "tiny/r0", "0.5"]
    return args, ["'tiny/r0'"]


@case
def case_leaderboard_record_bad_score(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    row = Leaderboard(ws.dir / "leaderboard.db").ids()[0]
    args = ["leaderboard", "--db", ws.dir / "leaderboard.db", "record", row, "high"]
    return args, ["'high'"]


@case
def case_leaderboard_db_is_not_a_database(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    (d / "junk.db").write_bytes(b"not sqlite at all" * 100)
    return ["leaderboard", "--db", d / "junk.db"], ["junk.db"]


@case
def case_reproduce_unknown_id(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ["reproduce", "tiny/r0", "--db", ws.dir / "leaderboard.db"], ["'tiny/r0'"]


@case
def case_report_no_such_run(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ["report", d / "nope"], ["nope", "no such run directory"]


@case
def case_report_folder_is_not_a_run(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ["report", d], [str(d), "not a run directory", "recipe.yaml"]


@case
def case_report_of_a_recipe_file(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ["report", ws.recipe(d)], ["recipe.yaml", "not a run directory"]


@case
def case_plugins_recipe_missing(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ["plugins", "--recipe", d / "nope.yaml"], ["nope.yaml", "not found"]


@case
def case_new_unknown_kind(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ["new", "model", "mynet", "--dir", d], ["'model'", "backbone"]


@case
def case_new_bad_name(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ["new", "backbone", "my-net", "--dir", d], ["'my-net'", "identifier"]


@case
def case_new_file_exists(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    (d / "mynet.py").write_text("# mine\n")
    return ["new", "backbone", "mynet", "--dir", d], ["mynet.py", "already exists"]


@case
def case_demo_data_existing_folder(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ["demo-data", d, "--train", "8", "--test", "2"], [str(d), "already exists"]


@case
def case_demo_data_too_few_clips(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ["demo-data", d / "demo", "--train", "0", "--test", "2"], ["--train"]


@case
def case_demo_data_too_few_songs(ws: Workspace, d: Path) -> tuple[list[Any], list[str]]:
    return ["demo-data", d / "demo", "--songs", "3"], ["--songs", "--test-share"]


@dataclass
class Outcome:
    """A case's command, what it printed and what its message must name."""

    args: list[Any]
    expect: list[str]
    returncode: int
    stdout: str
    stderr: str


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` with a digest of its content."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


@pytest.fixture(scope="module")
def outcomes(
    tiny_competition: DemoCompetition, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Outcome]:
    """Run every case against one workspace; check nothing finished was lost."""
    base = tmp_path_factory.mktemp("bad")
    ws = Workspace(base / "ws", tiny_competition.root)
    ws.dir.mkdir()
    finished = run(load_recipe(ws.recipe(ws.dir), ["train.epochs=1"], output=ws.dir / "done"))
    rows_before = {r.id: r.to_dict() for r in Leaderboard(ws.dir / "leaderboard.db").rows()}
    files_before = snapshot(ws.dir / "done")
    cache_before = snapshot(ws.dir / "cache")
    prepared = {}
    for name, make in CASES.items():
        folder = base / name
        folder.mkdir()
        prepared[name] = make(ws, folder), folder

    runner = CliRunner()
    results = {}
    for name, ((args, expect), folder) in prepared.items():
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(folder)
            patch.setenv("TOOLKIT_NO_PROGRESS", "1")
            patch.setenv("TOOLKIT_LOAD_PLUGINS", "")
            result = runner.invoke(app, [str(a) for a in args])
        stderr = result.stderr + (
            repr(result.exception) if result.exit_code not in (0, 1, 2) else ""
        )
        results[name] = Outcome(args, expect, result.exit_code, result.stdout, stderr)
    after = {r.id: r.to_dict() for r in Leaderboard(ws.dir / "leaderboard.db").rows()}
    assert {k: after[k] for k in rows_before} == rows_before  # rows kept as they were
    assert after[finished.leaderboard_id]["state"] == "complete"
    assert snapshot(ws.dir / "done") == files_before
    cache_after = snapshot(ws.dir / "cache")
    cache_before.pop("content_hashes.json")  # a memo of file digests: it may only grow
    assert {k: cache_after.get(k) for k in cache_before} == cache_before
    return results


def test_the_catalogue_is_large() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clear_line_and_exit_2(name: str, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[name]
    shown = f"{outcome.args}\nstdout: {outcome.stdout}\nstderr: {outcome.stderr}"
    assert outcome.returncode == 2, shown
    assert "Traceback" not in outcome.stderr + outcome.stdout, shown
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1, shown
    assert lines[0].startswith("error: "), shown
    for word in outcome.expect:
        assert word in lines[0], f"{word!r} not named: {shown}"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["run"], ["toolkit run", "Missing argument 'recipe'"]),
        (["run", "recipe.yaml", "--bogus"], ["toolkit run", "--bogus"]),
        (["rnu"], ["'rnu'", "'run'"]),
        (["leaderboard", "--top", "many"], ["toolkit leaderboard", "--top"]),
    ],
)
def test_command_line_mistakes_are_one_line_too(
    args: list[str], named: list[str], tmp_path: Path
) -> None:
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Usage:" not in result.stderr and "Traceback" not in result.stderr
    for word in named:
        assert word in lines[0]


@pytest.mark.parametrize(
    "name", ["sample_submission_columns", "train_csv_label_typo_once", "test_id_without_audio"]
)
def test_input_mistakes_stop_before_any_audio_work(
    name: str, tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    ws = Workspace(tmp_path / "fresh", tiny_competition.root)  # a cache with nothing in it
    ws.dir.mkdir()
    args, _ = CASES[name](ws, tmp_path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TOOLKIT_NO_PROGRESS", "1")
        result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    cached = [p for p in (ws.dir / "cache").rglob("*") if p.is_file()]
    assert cached == []  # no clip was decoded, separated or featurised
    assert not Leaderboard(ws.dir / "leaderboard.db").rows()  # and no run was started
