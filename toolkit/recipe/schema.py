"""The recipe: a YAML file validated into typed settings before any work starts.

Engine settings are pydantic models that forbid unknown keys. Plugin blocks
(``separator``, ``features``, ``augmenters``, ``model.backbone``) are plain
mappings with a ``name``; each is checked by the plugin that owns it, so the
resolved recipe carries every plugin parameter with its default filled in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from toolkit.recipe.class_keys import ClassMap
from toolkit.recipe.search import Search
from toolkit.recipe.section import PluginSpec, Strict


class DemoData(Strict):
    """The embedded demo competition, synthesized into ``folder`` when it is missing.

    It is the run's data when ``data.root`` is not set or names that same
    folder; a recipe pointed at a real competition (``--set data.root=...``)
    ignores it, so a misspelt real path is an error, never a new demo.
    """

    folder: Path = Path("data/demo")
    n_train: int = Field(400, ge=8)
    n_test: int = Field(100, ge=1)
    seed: int = 0
    duration: float = Field(3.0, gt=0)
    songs: int = Field(0, ge=0)
    """Songs the clips are cut from, sung by shared singers (0: every clip a song of its
    own); train and test share no song and no singer."""
    singers: int = Field(15, ge=2)
    """With ``songs``: singers of each gender, train and test together."""
    test_share: float = Field(0.2, gt=0, lt=1)
    """With ``songs``: the share of the songs and singers kept for the test clips."""

    @property
    def class_names(self) -> dict[str, str]:
        """The demo's name of each of its labels (``"0"``: no voice, ...)."""
        from toolkit.demo.sound import CLASS_NAMES

        return {str(label): name for label, name in enumerate(CLASS_NAMES)}


class Data(Strict):
    """Where the competition lives and how clips are decoded."""

    demo: DemoData | None = None
    root: Path = Field(
        None,  # type: ignore[assignment]  # filled in from data.demo, else an error
        validate_default=True,
        description="the competition folder (default: data.demo's folder)",
    )
    train_csv: str = "train.csv"
    train_audio: str = "train"
    test_audio: str = "test"
    sample_submission: str = "sample_submission.csv"
    id_column: str = "id"
    label_column: str = "category"
    sample_rate: int = Field(22050, gt=0, description="rate the features are computed at")
    duration: float = Field(10.0, gt=0, description="seconds per clip, by crop or zero pad")
    crop: Literal["start", "center"] = "start"
    group_column: str | None = None
    """A train CSV column whose equal values (e.g. one song) never straddle a split."""
    class_names: ClassMap[str] | None = None
    """Names the report shows for labels (label as written in the train CSV -> name), e.g.
    ``{none: no voice}``; each key must be a label of the train CSV. The demo names its own."""

    @property
    def label_names(self) -> dict[str, str]:
        """The name shown for each label that has one: the demo's own names when the run
        reads the demo's folder, ``class_names`` over them."""
        own = self.demo.class_names if self.demo is not None else {}
        return {**own, **(self.class_names or {})}

    @field_validator("root", mode="before")
    @classmethod
    def _default_root(cls, value: Any, info: ValidationInfo) -> Any:
        """No root: the demo's folder, or an error saying what to set."""
        if value is not None:
            return value
        demo = info.data.get("demo")
        if demo is None:
            raise ValueError(
                "the competition folder is missing; set data.root (--set data.root=PATH), "
                "or data.demo for the demo competition"
            )
        return demo.folder

    @model_validator(mode="after")
    def _demo_of_root(self) -> Data:
        """A demo whose folder is not the root does not apply (a real competition is used)."""
        if self.demo is not None and not _same_path(self.root, self.demo.folder):
            self.demo = None
        return self


def _same_path(a: Path, b: Path) -> bool:
    """Whether two paths (relative ones from the current folder) name the same place."""
    return Path(a).absolute() == Path(b).absolute()


class Split(Strict):
    """Which train clips validate: one held-out part (``test_size``) or K folds."""

    test_size: float = Field(0.2, gt=0, lt=1)
    random_state: int = 42
    stratify: bool = True
    folds: int = Field(1, ge=1, description="K >= 2: K-fold cross-validation; 1: one split")
    groups: Literal["none", "auto"] = Field(
        "none",
        description="auto: find clips that share a song or a singer and keep each group on "
        "one side of every split (data.group_column wins when set)",
    )
    group_cap: int | None = Field(
        None, ge=2, description="most clips in one found group (default: half of one part)"
    )
    group_by: list[Literal["song", "voice"]] = Field(
        default_factory=lambda: ["song"],
        min_length=1,
        description="what links clips with groups: auto: song (the accompaniment), voice "
        "(the speaker encoder on the separated stem)",
    )
    group_threshold: Literal["test", "z"] = Field(
        "test",
        description="when two mutually nearest train clips link: test: their similarity "
        "reaches a threshold calibrated on the test clips (at most 20% of linked clips "
        "expected as close as test clips come to their nearest train clip); z: it stands "
        "out from all pairs (robust z-score over 1.5), the rule before issue 29",
    )


class Model(Strict):
    """The network: a backbone plugin block."""

    backbone: PluginSpec = Field(default_factory=lambda: {"name": "resnet18"})


class Optimizer(Strict):
    """Optimizer settings."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)


class Scheduler(Strict):
    """Learning-rate schedule, stepped once per epoch."""

    name: Literal["multistep", "cosine", "none"] = "multistep"
    milestones: list[int] = Field(default_factory=lambda: [6, 12, 18])
    gamma: float = Field(0.1, gt=0)
    eta_min: float = Field(0.0, ge=0)


class Train(Strict):
    """Training loop settings."""

    epochs: int = Field(24, ge=1)
    batch_size: int = Field(32, ge=1)
    seed: int = 0
    deterministic: bool = Field(
        True, description="only deterministic kernels (same seed, same numbers; CUDA is slower)"
    )
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="autocast of forward passes (training and evaluation): auto is bf16 on a "
        "CUDA device that supports it, else fp32, the CPU included (bf16 there changes a seeded "
        "run's numbers and is only faster with bf16 instructions); fp16 adds a loss scaler",
    )
    data_on_device: Literal["auto"] | bool = Field(
        "auto",
        description="keep the expanded training set, validation and test features on the device "
        "for the whole run (auto: when they fit in half its free memory; always on the CPU); "
        "otherwise copy one batch ahead from pinned memory",
    )
    channels_last: Literal["auto"] | bool = Field(
        "auto",
        description="channels-last memory layout for 2-D convolutional backbones "
        "(auto: on CUDA; on the CPU it changes a seeded run's numbers)",
    )
    compile: bool = Field(
        False, description="torch.compile the model (a C++ compiler on the CPU, Triton on CUDA)"
    )
    eval_batch_size: int = Field(128, ge=1)
    calibration: Literal["temperature", "none"] = Field(
        "temperature",
        description="temperature: fit one temperature per model (per fold) on its validation "
        "predictions at each epoch; a metric of probabilities (log_loss) chooses the epoch on "
        "the calibrated predictions, and the kept epoch's validation and test probabilities are "
        "calibrated; none: raw probabilities",
    )
    optimizer: Optimizer = Field(default_factory=Optimizer)
    scheduler: Scheduler = Field(default_factory=Scheduler)


class Cache(Strict):
    """Where separated stems and features are cached."""

    dir: Path = Path("runs/.cache")
    batch_size: int = Field(16, ge=1, description="clips per separation/feature batch")


class Output(Strict):
    """Where a run writes its files and its leaderboard rows."""

    dir: Path | None = None
    leaderboard: Path = Path("runs/leaderboard.db")


class Ensemble(Strict):
    """Greedy ensemble selection (Caruana et al., 2004) over the study's complete trials, or a
    stacked model over them (``method``)."""

    size: int = Field(20, ge=1, description="greedy rounds (picks, with replacement)")
    init_best: int = Field(0, ge=0, description="start from the N best trials")
    seeds: int = Field(0, ge=0, description="models per chosen trial, by train.seed; 0/1: one")
    refit: bool = Field(
        False, description="retrain each chosen trial on every clip for the test prediction"
    )
    method: Literal["greedy", "stack", "auto"] = Field(
        "greedy",
        description="greedy: weighted average by greedy selection; stack: a logistic regression "
        "over every trial's held-out probabilities; auto: the one with the better estimate",
    )

    @field_validator("method")
    @classmethod
    def _refit_is_greedy(cls, value: str, info: ValidationInfo) -> str:
        """A stacked model reads every trial's test probabilities; refits exist only for
        greedy's chosen few."""
        if value != "greedy" and info.data.get("refit"):
            raise PydanticCustomError(
                "method",
                f"{value} combines every trial; refit retrains only greedy's chosen ones: "
                "set method: greedy or refit: false",
            )
        return value


class PseudoLabels(Strict):
    """The test clips a trained model is sure of, as extra training targets of a second round."""

    threshold: float = Field(
        0.9,
        ge=0.0,
        lt=1.0,
        description="a test clip is used when its highest predicted probability is at least this",
    )
    power: float = Field(
        2.0,
        ge=1.0,
        description="sharpening: each probability raised to this power, the row renormalised "
        "(a softmax temperature of 1/power; 1: as predicted)",
    )


class SemiSupervised(Strict):
    """Learning from the unlabelled test clips (opt-in)."""

    pseudo_labels: PseudoLabels = Field(default_factory=PseudoLabels)


class Predict(Strict):
    """How the trained models predict."""

    tta: list[PluginSpec] = Field(default_factory=list)
    """Test-time augmenters (e.g. ``time_shift``): validation and test predictions are
    averaged over the features and every view these give."""


class Recipe(Strict):
    """A whole pipeline: data, stages, training, search and ensemble."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    plugins: list[Path] = Field(default_factory=list)
    data: Data
    separator: PluginSpec = Field(default_factory=lambda: {"name": "none"})
    features: PluginSpec | list[PluginSpec] = Field(default_factory=lambda: {"name": "mel"})
    """One feature block, or several streams (each with ``input: separated|mixture``)."""
    augmenters: list[PluginSpec] = Field(default_factory=list)
    split: Split = Field(default_factory=Split)
    model: Model = Field(default_factory=Model)
    train: Train = Field(default_factory=Train)
    cache: Cache = Field(default_factory=Cache)
    output: Output = Field(default_factory=Output)
    search: Search | None = None
    ensemble: Ensemble | None = None
    predict: Predict = Field(default_factory=Predict)
    semi_supervised: SemiSupervised | None = None

    @property
    def feature_streams(self) -> list[PluginSpec]:
        """The feature blocks in use, always as a list (``enabled: false`` ones left out)."""
        blocks = self.features if isinstance(self.features, list) else [self.features]
        return [b for b in blocks if b.get("enabled", True)]

    @property
    def run_dir(self) -> Path:
        """The run's output directory."""
        return self.output.dir if self.output.dir is not None else Path("runs") / self.name


PATH_KEYS: tuple[tuple[str, ...], ...] = (
    ("data", "root"),
    ("data", "demo", "folder"),
    ("cache", "dir"),
    ("output", "dir"),
    ("output", "leaderboard"),
)
"""Recipe keys that hold paths (``plugins:`` files aside)."""

FEATURE_INPUTS = ("separated", "mixture")
"""What a feature stream reads: the separator's output (default) or the decoded clip."""


def feature_input(block: PluginSpec) -> str:
    """What a feature block reads (its ``input``; default ``separated``)."""
    return str(block.get("input", "separated"))


def stream_label(block: PluginSpec) -> str:
    """A stream's short name: its plugin, and what it reads when that is not the separator's."""
    source = feature_input(block)
    return block["name"] if source == "separated" else f"{block['name']}({source})"


FEATURE_ENGINE_KEYS = ("input", "enabled")
"""Keys of a feature block that the engine reads, not its plugin (``enabled: false`` drops
the stream, so a search can switch an extra stream on and off)."""


def plugin_params(block: PluginSpec) -> PluginSpec:
    """A feature block without the engine's keys: what its plugin is built from."""
    return {k: v for k, v in block.items() if k not in FEATURE_ENGINE_KEYS}


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML, every default written out."""
    data = recipe.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False)
