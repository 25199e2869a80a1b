"""Recipe validation, overrides and the resolved recipe."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from toolkit.errors import RecipeError
from toolkit.recipe.keypaths import get_path, set_path
from toolkit.recipe.loading import load_recipe, parse_override
from toolkit.recipe.schema import dump_recipe
from toolkit.study.profiles import validate_profiles
from toolkit.study.space import validate_space
from toolkit.training.pipeline import build_augmenters

BASE = """
name: t
data: {root: data/x, sample_rate: 16000, duration: 1.0}
features: {name: mel, n_mels: 32}
augmenters:
  - {name: oversample, copies: {0: 3}}
  - {name: mixup, alpha: 0.2}
model: {backbone: {name: resnet18, width: 8}}
train: {epochs: 2, optimizer: {name: sgd, lr: 0.01}}
"""


def write(tmp_path: Path, text: str = BASE) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def error_of(path: Path, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_valid_recipe_fills_plugin_defaults(tmp_path: Path) -> None:
    loaded = load_recipe(write(tmp_path))
    recipe = loaded.recipe
    assert recipe.features["n_mels"] == 32
    assert recipe.features["hop_length"] == 512  # the plugin's default, written out
    assert recipe.augmenters[1] == {"name": "mixup", "alpha": 0.2, "per_example": False, "p": 1.0}
    assert recipe.run_dir == tmp_path / "runs" / "t"  # in the recipe's project folder
    dumped = yaml.safe_load(dump_recipe(recipe))
    assert dumped["features"]["hop_length"] == 512
    assert dumped["train"]["optimizer"]["lr"] == 0.01


def test_engine_key_typo_names_file_path_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("epochs: 2", "epoch: 2"))
    message = error_of(path)
    assert str(path) in message
    assert "train.epoch" in message
    assert "'epochs'" in message


def test_wrong_type_names_key_and_expectation(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, BASE.replace("epochs: 2", "epochs: ten")))
    assert "train.epochs" in message
    assert "integer" in message
    assert "'ten'" in message


def test_unknown_plugin_suggests_closest_name(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, BASE.replace("name: mel", "name: mell")))
    assert "features" in message
    assert "unknown feature_extractor 'mell'" in message
    assert "did you mean 'mel'" in message


def test_plugin_parameter_typo_checked_by_plugin(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, BASE.replace("n_mels: 32", "n_melz: 32")))
    assert "features.n_melz" in message
    assert "'n_mels'" in message


def test_augmenter_parameter_error_names_list_index(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, BASE.replace("alpha: 0.2", "alpha: -1")))
    assert "augmenters[1].alpha" in message


def test_set_overrides_any_key(tmp_path: Path) -> None:
    path = write(tmp_path)
    loaded = load_recipe(
        path,
        (
            "train.optimizer.lr=0.5",
            "augmenters.1.alpha=0.4",
            "model.backbone={name: timm, model: resnet10t}",
            "split.stratify=false",
        ),
    )
    recipe = loaded.recipe
    assert recipe.train.optimizer.lr == 0.5
    assert recipe.augmenters[1]["alpha"] == 0.4
    assert recipe.model.backbone["model"] == "resnet10t"
    assert recipe.split.stratify is False


def test_bad_overrides(tmp_path: Path) -> None:
    path = write(tmp_path)
    assert "KEY=VALUE" in error_of(path, ("train.lr",))
    assert "augmenters.7" in error_of(path, ("augmenters.7.alpha=1",))
    assert "train.optimizer.lrr" in error_of(path, ("train.optimizer.lrr=1",))


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, BASE + "train: [unclosed\n"))
    assert "invalid YAML" in message
    assert "line" in message


def test_missing_recipe_file(tmp_path: Path) -> None:
    assert "recipe file not found" in error_of(tmp_path / "nope.yaml")


def test_override_helpers() -> None:
    keys, value = parse_override("a.b=[1, 2]")
    assert keys == ["a", "b"] and value == [1, 2]
    raw: dict = {"a": [{"x": 1}]}
    set_path(raw, ["a", "0", "x"], 5)
    set_path(raw, ["new", "deep"], True)
    assert raw == {"a": [{"x": 5}], "new": {"deep": True}}
    assert get_path(raw, ["a", "0", "x"]) == 5
    assert get_path(raw, ["a", "1", "x"], "missing") == "missing"
    assert get_path(raw, ["new", "deep", "er"]) is None


@pytest.mark.parametrize("name", ["demo.yaml", "demo-search.yaml", "final.yaml", "cv.yaml"])
def test_shipped_recipes_validate(name: str) -> None:
    path = Path(__file__).parent.parent / "recipes" / name
    recipe = load_recipe(path).recipe
    assert recipe.separator["name"] == "spleeter" and recipe.separator["stem"] == "vocals"
    assert recipe.features["name"] == "mel"
    assert [a["name"] for a in recipe.augmenters] == ["oversample", "time_mask", "mixup"]


FROZEN_STREAMS = [("musicnn", "separated"), ("speaker", "separated"), ("musicnn", "mixture")]


def test_pretrained_recipe_validates_with_its_search() -> None:
    loaded = load_recipe(Path(__file__).parent.parent / "recipes" / "pretrained.yaml")
    recipe = loaded.recipe
    streams = [(b["name"], b.get("input", "separated")) for b in recipe.feature_streams]
    assert streams == FROZEN_STREAMS
    assert recipe.model.backbone["name"] == "head"
    assert recipe.search is not None and "features.2.enabled" in recipe.search.space
    validate_space(loaded.raw, loaded.registry, recipe.search.space)


def test_strong_recipe_is_a_study_of_three_profiles() -> None:
    loaded = load_recipe(Path(__file__).parent.parent / "recipes" / "strong.yaml")
    search = loaded.recipe.search
    assert search is not None and list(search.profiles) == ["head", "cnn", "finetune"]
    profiles = validate_profiles(loaded.raw, loaded.registry, search)  # recipes and spaces
    head, cnn, finetune = profiles["head"], profiles["cnn"], profiles["finetune"]
    streams = [(b["name"], b.get("input", "separated")) for b in head.feature_streams]
    assert streams == FROZEN_STREAMS and head.model.backbone["name"] == "head"
    assert (cnn.feature_streams[0]["name"], cnn.model.backbone["name"]) == ("mel", "resnet18")
    assert finetune.model.backbone["name"] == "speaker_finetune"
    assert {r.split.groups for r in profiles.values()} == {"auto"}  # one split for all
    assert loaded.recipe.ensemble is not None and loaded.recipe.ensemble.method == "auto"


def test_final_recipe_has_the_reports_settings() -> None:
    recipe = load_recipe(Path(__file__).parent.parent / "recipes" / "final.yaml").recipe
    assert {int(k): v for k, v in recipe.augmenters[0]["copies"].items()} == {0: 3}
    assert recipe.augmenters[2]["alpha"] == 0.2
    assert (recipe.split.test_size, recipe.split.random_state) == (0.2, 42)
    assert recipe.model.backbone["name"] == "resnet18"
    opt, sched = recipe.train.optimizer, recipe.train.scheduler
    assert (opt.name, opt.lr, opt.momentum, opt.weight_decay) == ("sgd", 1e-3, 0.9, 0.0)
    assert recipe.train.epochs == 24
    assert (sched.name, sched.milestones, sched.gamma) == ("multistep", [6, 12, 18], 0.1)
    assert recipe.split.folds == 1  # the report's single split, as written


def test_cv_recipe_is_the_reports_pipeline_on_five_folds() -> None:
    recipes = Path(__file__).parent.parent / "recipes"
    final = load_recipe(recipes / "final.yaml").recipe
    cv = load_recipe(recipes / "cv.yaml").recipe
    assert cv.split.folds == 5 and cv.split.stratify and cv.split.groups == "auto"
    assert cv.search is not None and cv.search.n_trials > 1 and cv.ensemble is not None
    for block in ("separator", "features", "augmenters", "model", "train"):
        assert getattr(cv, block) == getattr(final, block), block


COUNTED_PLUGIN = '''
import numpy as np
import pydantic

from toolkit import DatasetAugmenter, hookimpl

VALIDATED = []
"""The copies of every block the params model validated, in order."""
BUILT = []
"""The keyword arguments of every call of the factory, in order."""


class CountedParams(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    copies: dict[int, int]

    @pydantic.model_validator(mode="after")
    def _count(self):
        VALIDATED.append(dict(self.copies))
        return self


class Counted(DatasetAugmenter):
    def __init__(self, **values):
        BUILT.append(values)

    def expand(self, features, labels, rng):
        return features[:0], np.asarray(labels)[:0]


@hookimpl
def register_augmenters(register):
    register("counted", Counted, params=CountedParams)
'''


def test_plugin_blocks_are_validated_once_and_built_from_the_validated_values(
    tmp_path: Path,
) -> None:
    (tmp_path / "counted.py").write_text(COUNTED_PLUGIN)
    text = BASE.replace(
        "augmenters:\n",
        "plugins: [counted.py]\naugmenters:\n"
        "  - {name: counted, copies: {0: 2}}\n"
        "  - {name: counted, copies: {1: 3}}\n",
    )
    loaded = load_recipe(write(tmp_path, text))
    entry = loaded.registry.get_info("augmenters", "counted")
    plugin = sys.modules[entry.factory.__module__]
    assert plugin.VALIDATED == [{0: 2}, {1: 3}]
    # The resolved recipe holds JSON (string keys); the factory gets the validated ints.
    assert loaded.recipe.augmenters[0] == {"name": "counted", "copies": {"0": 2}}
    dataset_augmenters, _ = build_augmenters(loaded.recipe, loaded.registry, ["0", "1", "2"])
    assert len(dataset_augmenters) == 3
    assert plugin.BUILT == [{"copies": {0: 2}}, {"copies": {1: 3}}]
    assert plugin.VALIDATED == [{0: 2}, {1: 3}], "building validated nothing again"
    # A block that recipe validation never saw is validated once, then built.
    loaded.registry.create("augmenters", {"name": "counted", "copies": {"2": 1}})
    loaded.registry.create("augmenters", {"name": "counted", "copies": {"2": 1}})
    assert plugin.VALIDATED == [{0: 2}, {1: 3}, {2: 1}]
    assert plugin.BUILT[2:] == [{"copies": {2: 1}}, {"copies": {2: 1}}]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "n_mels: 32",
            "n_mels: 32, win_length: 2048",
            "features: win_length 2048 exceeds n_fft 1024",
        ),
        ("n_mels: 32", "n_mels: 32, f_min: 500, f_max: 400", "features: f_max 400.0 must exceed"),
        (
            "width: 8",
            "width: 8, dropout: 1.5",
            "model.backbone.dropout: Input should be less than 1",
        ),
        (
            "width: 8",
            "width: 0",
            "model.backbone.width: Input should be greater than or equal to 1",
        ),
        ("{name: resnet18, width: 8}", "{name: timm, model: resnet_18}", "model.backbone.model"),
    ],
)
def test_bad_plugin_parameter_fails_at_recipe_validation(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    message = error_of(write(tmp_path, BASE.replace(old, new)))
    assert expected in message
    assert "Value error" not in message


# ---------------------------------------------------------------- where paths lead


def test_paths_come_from_the_project_folder_whatever_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "contest"
    (project / "recipes").mkdir(parents=True)
    in_recipes = write(project / "recipes", BASE)
    beside = project / "top.yaml"
    beside.write_text(BASE.replace("data/x", "../elsewhere"))
    monkeypatch.chdir(tmp_path)  # not the project folder
    recipe = load_recipe(in_recipes).recipe
    assert recipe.data.root == project / "data" / "x"
    assert recipe.cache.dir == project / "runs" / ".cache"
    assert recipe.output.leaderboard == project / "runs" / "leaderboard.db"
    assert recipe.run_dir == project / "runs" / "t"
    top = load_recipe(beside).recipe  # a recipe outside recipes/: its own folder
    assert top.data.root == (project / ".." / "elsewhere").absolute()
    assert top.run_dir == project / "runs" / "t"


def test_command_line_paths_come_from_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "proj").mkdir()
    path = write(tmp_path / "proj", BASE)
    monkeypatch.chdir(tmp_path)
    loaded = load_recipe(path, ["data.root=comp", "cache.dir=~/c"], output=Path("out/r"))
    assert loaded.recipe.data.root == tmp_path / "comp"
    assert loaded.recipe.cache.dir == Path.home() / "c"
    assert loaded.recipe.run_dir == tmp_path / "out" / "r"
    assert loaded.raw["data"]["root"] == str(tmp_path / "comp")  # what trials and rows see


DEMO = BASE.replace("data: {root: data/x,", "data: {demo: {n_train: 8, n_test: 2},")


def test_the_demo_is_the_data_until_a_root_is_set(tmp_path: Path) -> None:
    path = write(tmp_path, DEMO)
    demo = load_recipe(path).recipe
    assert demo.data.root == tmp_path / "data" / "demo" == demo.data.demo.folder  # type: ignore[union-attr]
    real = load_recipe(path, [f"data.root={tmp_path / 'real'}"]).recipe
    assert real.data.root == tmp_path / "real" and real.data.demo is None
    same = load_recipe(path, [f"data.root={tmp_path / 'data' / 'demo'}"]).recipe
    assert same.data.demo is not None  # the demo's own folder: still the demo


def test_a_misspelt_real_root_is_an_error_never_a_demo(tmp_path: Path) -> None:
    from toolkit.data.checks import check_inputs
    from toolkit.errors import DataError

    path = write(tmp_path, DEMO)
    loaded = load_recipe(path, [f"data.root={tmp_path / 'competiton'}"])
    with pytest.raises(DataError, match="competiton: competition folder not found"):
        check_inputs(loaded.recipe, loaded.registry)
    assert not (tmp_path / "competiton").exists() and not (tmp_path / "data").exists()


def test_no_root_and_no_demo_says_what_to_set(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, BASE.replace("root: data/x, ", "")))
    assert "data.root: the competition folder is missing" in message
    assert "--set data.root=PATH" in message and "(got" not in message


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.epoch=3", "train.epoch: unknown key"),
        ("train.epochs=many", "train.epochs"),
        ("model.backbone.name=resnet81", "model.backbone: unknown backbone 'resnet81'"),
        ("augmenters.1.alpha=-1", "augmenters[1].alpha"),
    ],
)
def test_an_error_in_a_set_value_names_the_override(
    tmp_path: Path, override: str, key: str
) -> None:
    path = write(tmp_path)
    message = error_of(path, (override,))
    assert message.startswith(f"--set {override}: {key}"), message
    assert str(path) not in message


def test_an_error_of_the_file_names_the_file_despite_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("epochs: 2", "epoch: 2"))
    message = error_of(path, ("train.batch_size=8",))
    assert message.startswith(f"{path}: train.epoch: unknown key"), message
