"""A recipe's data and training: load and check it, prepare features once, train its model."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from toolkit.data.checks import CheckedInputs, check_inputs
from toolkit.data.dataset import Competition
from toolkit.data.preprocess import Preprocessor, StageStats
from toolkit.errors import DataError
from toolkit.recipe.schema import Recipe, stream_label
from toolkit.recipe.validation import stream_mode
from toolkit.registry.kinds import BatchAugmenter, DatasetAugmenter, TestTimeAugmenter
from toolkit.registry.table import Registry
from toolkit.training.fusion import Layout, fuse
from toolkit.training.trainer import EpochCallback, TrainResult, seed_everything, train
from toolkit.validation.grouping import grouped_inputs
from toolkit.validation.source_links import FoundSources
from toolkit.validation.split import Fold


@dataclass
class PreparedData:
    """Features of the whole competition and the fixed folds of its train clips."""

    competition: Competition
    train_x: np.ndarray
    test_x: np.ndarray
    folds: tuple[Fold, ...]
    """One fold for a single train/validation split, else ``split.folds`` of them."""
    stats: StageStats
    layout: Layout
    """Where each feature stream lies in a row of ``train_x`` and ``test_x``."""
    held_out: dict[bytes, np.ndarray] = dataclasses.field(
        default_factory=dict, repr=False, compare=False
    )
    """Each fold's held-out features, gathered once (shared with :meth:`reused` copies)."""
    sources: FoundSources | None = None
    """The groups of clips ``split.groups: auto`` found (the folds keep them together)."""

    @property
    def train(self) -> ClipFeatures:
        """The train clips' features with their layout."""
        return ClipFeatures(self.train_x, self.layout)

    def held_out_x(self, fold: Fold) -> np.ndarray:
        """The features of ``fold``'s held-out clips: the same array every time it is asked
        for, so seed copies and repeated folds reuse its device copy."""
        key = fold.val_idx.tobytes()
        if key not in self.held_out:
            self.held_out[key] = np.asarray(self.train_x[fold.val_idx])
        return self.held_out[key]

    @property
    def cross_validated(self) -> bool:
        """Whether the clips are split into K >= 2 folds (predictions are out-of-fold)."""
        return len(self.folds) > 1

    @property
    def val_idx(self) -> np.ndarray:
        """The clips a model's validation predictions cover: the held-out part, or every
        train clip (out-of-fold) when cross-validated."""
        if self.cross_validated:
            return np.arange(len(self.labels))
        return self.folds[0].val_idx

    @property
    def labels(self) -> np.ndarray:
        """Class index of every train clip."""
        return self.competition.train_labels

    @property
    def val_labels(self) -> np.ndarray:
        """Class index of every clip of :attr:`val_idx`."""
        return self.competition.train_labels[self.val_idx]

    def reused(self) -> PreparedData:
        """The same view for one more model of the process: its stats say no stage ran."""
        return dataclasses.replace(self, stats=StageStats(views_reused=1))

    def all_clips(self) -> Fold:
        """Every train clip trains, none is held out (a refit on the full data)."""
        return Fold(np.arange(len(self.labels)), np.arange(0))


def prepare(
    recipe: Recipe, registry: Registry, inputs: CheckedInputs | None = None
) -> PreparedData:
    """Check the inputs (unless given checked) and compute (or reuse) every clip's features."""
    inputs = inputs or grouped_inputs(recipe, registry)
    competition = inputs.competition
    stats = StageStats()
    train = clip_features(
        recipe, registry, competition.train_files, competition.train_ids, "train", stats
    )
    test = clip_features(
        recipe, registry, competition.test_files, competition.test_ids, "test", stats
    )
    return PreparedData(
        competition, train.x, test.x, inputs.folds, stats, train.layout, sources=inputs.sources
    )


@dataclass(frozen=True)
class ClipFeatures:
    """Some clips' fused features (one row per clip) and where each stream lies in a row."""

    x: np.ndarray
    layout: Layout


def clip_features(
    recipe: Recipe,
    registry: Registry,
    files: Sequence[Path],
    ids: Sequence[str],
    split: str,
    stats: StageStats | None = None,
) -> ClipFeatures:
    """The features of these clips as the recipe's backbone takes them: each stream separated
    and extracted (or found in the cache), then fused; what the stages did is added to
    ``stats``. ``split`` names the clips in progress lines."""
    mode = stream_mode(recipe, registry)
    arrays: list[np.ndarray] = []
    for stream in recipe.feature_streams:
        pre = Preprocessor(recipe, registry, stream)
        arrays.append(pre.features(files, ids, split))
        if stats is not None:
            stats.add(pre.stats)
    labels = [stream_label(b) for b in recipe.feature_streams]
    return ClipFeatures(fuse(arrays, mode, labels), Layout.of(mode, recipe.feature_streams, arrays))


def separate_all(recipe: Recipe, registry: Registry) -> StageStats:
    """Precompute the separated stems of every train and test clip (resumable)."""
    # every stream that reads the separator's output shares these stems
    competition = check_inputs(recipe, registry).competition
    pre = Preprocessor(recipe, registry)
    pre.separate(competition.train_files, "train: separating")
    pre.separate(competition.test_files, "test: separating")
    return pre.stats


def build_augmenters(
    recipe: Recipe, registry: Registry, classes: Sequence[str]
) -> tuple[list[DatasetAugmenter], list[BatchAugmenter]]:
    """The recipe's augmenters, split by stage, in recipe order; ``classes`` are the train
    CSV's sorted labels (a setting that names classes gets their indices)."""
    dataset: list[DatasetAugmenter] = []
    batch: list[BatchAugmenter] = []
    for i, spec in enumerate(recipe.augmenters):
        augmenter = registry.create("augmenters", spec, f"augmenters[{i}]", classes=classes)
        if isinstance(augmenter, DatasetAugmenter):
            dataset.append(augmenter)
        elif isinstance(augmenter, BatchAugmenter):
            batch.append(augmenter)
        else:
            raise DataError(
                f"augmenters[{i}]: plugin {spec['name']!r} is neither a DatasetAugmenter "
                "nor a BatchAugmenter"
            )
    return dataset, batch


def build_test_time_augmenters(
    recipe: Recipe, registry: Registry, classes: Sequence[str]
) -> list[TestTimeAugmenter]:
    """The recipe's ``predict.tta`` augmenters (a plugin of another stage is a DataError);
    ``classes`` as for :func:`build_augmenters`."""
    built: list[TestTimeAugmenter] = []
    for i, spec in enumerate(recipe.predict.tta):
        augmenter = registry.create("augmenters", spec, f"predict.tta[{i}]", classes=classes)
        if not isinstance(augmenter, TestTimeAugmenter):
            raise DataError(
                f"predict.tta[{i}]: plugin {spec['name']!r} is not a TestTimeAugmenter "
                "(a training augmenter belongs under augmenters:)"
            )
        built.append(augmenter)
    return built


def expand_training_set(
    x: np.ndarray, y: np.ndarray, augmenters: Iterable[DatasetAugmenter], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The training part with every dataset augmenter's copies appended, in order.

    Each augmenter sees the set as expanded by the ones before it (the report
    oversamples, then masks a copy of the whole oversampled set).
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(x)
    for augmenter in augmenters:
        extra_x, extra_y = augmenter.expand(x, y, rng)
        if len(extra_x):
            x = np.concatenate([x, np.asarray(extra_x, dtype=x.dtype)])
            y = np.concatenate([y, np.asarray(extra_y, dtype=y.dtype)])
    return x, y


def materialize(backbone: nn.Module, shape: tuple[int, ...]) -> None:
    """Give a backbone's lazy layers their sizes with one pass over zeros of ``shape``."""
    lazy = [m for m in backbone.modules() if isinstance(m, LazyModuleMixin)]
    if any(m.has_uninitialized_params() for m in lazy):
        backbone.eval()
        with torch.no_grad():
            backbone(torch.zeros(2, *shape))
        backbone.train()


def with_extra(
    train_x: np.ndarray, train_y: np.ndarray, extra: tuple[np.ndarray, np.ndarray], classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """The training set with ``extra`` examples (features, soft targets ``[M, K]``) after
    it; its own labels become one-hot targets."""
    extra_x, extra_y = extra
    one_hot = np.eye(classes, dtype=np.float32)[train_y]
    x = np.concatenate([train_x, np.asarray(extra_x, dtype=train_x.dtype)])
    return x, np.concatenate([one_hot, np.asarray(extra_y, dtype=np.float32)])


def build_backbone(
    recipe: Recipe,
    registry: Registry,
    num_classes: int,
    features: ClipFeatures,
    classes: Sequence[str] | None = None,
) -> nn.Module:
    """The recipe's backbone for ``num_classes`` classes and clips featured like
    ``features``, its lazy layers sized.

    The engine gives every factory ``num_classes`` and ``in_channels``, and the
    streams' :class:`~toolkit.training.fusion.Layout` to a factory that names a ``layout``
    parameter; ``classes`` (the sorted labels) turn a setting that names classes into
    class indices.
    """
    shape = tuple(features.x.shape[1:])
    spec = recipe.model.backbone
    factory = registry.get_info("backbones", spec["name"], "model.backbone").factory
    context: dict[str, object] = {"num_classes": num_classes, "in_channels": int(shape[0])}
    if "layout" in inspect.signature(factory).parameters:
        context["layout"] = features.layout
    backbone = registry.create("backbones", spec, "model.backbone", classes=classes, **context)
    materialize(backbone, shape)
    return backbone


def train_recipe(
    recipe: Recipe,
    registry: Registry,
    data: PreparedData,
    *,
    fold: Fold | None = None,
    on_epoch: EpochCallback | None = None,
    select_by: str,
    description: str = "training",
    extra: tuple[np.ndarray, np.ndarray] | None = None,
) -> TrainResult:
    """Train the recipe's backbone on a fold's training part (default: the first fold);
    its held-out part validates and never sees a copy of its clips.

    ``extra`` (features ``[M, ...]`` and soft targets ``[M, K]``, e.g. pseudo-labelled
    test clips) joins the training part after the dataset augmenters; it is never
    validated on.

    Everything random (initial weights, augmenter draws, batch order, dropout)
    is seeded from ``train.seed`` first, whatever ran before in the process.
    A fold without held-out clips (:meth:`PreparedData.all_clips`) trains for
    ``train.epochs`` and keeps the last epoch.
    """
    seed_everything(recipe.train.seed, recipe.train.deterministic)
    fold = fold or data.folds[0]
    labels = data.labels
    train_x = np.asarray(data.train_x[fold.train_idx])
    train_y = labels[fold.train_idx]
    classes = data.competition.classes
    dataset_augs, batch_augs = build_augmenters(recipe, registry, classes)
    train_x, train_y = expand_training_set(train_x, train_y, dataset_augs, recipe.train.seed)
    if extra is not None:
        train_x, train_y = with_extra(train_x, train_y, extra, data.competition.num_classes)
    for augmenter in batch_augs:
        augmenter.set_layout(data.layout)
    backbone = build_backbone(recipe, registry, len(classes), data.train, classes)
    return train(
        backbone,
        train_x,
        train_y,
        data.held_out_x(fold),
        labels[fold.val_idx],
        recipe.train,
        data.competition.num_classes,
        test_x=data.test_x,
        batch_augmenters=batch_augs,
        test_time_augmenters=build_test_time_augmenters(recipe, registry, classes),
        select_by=select_by,
        on_epoch=on_epoch,
        description=description,
    )
