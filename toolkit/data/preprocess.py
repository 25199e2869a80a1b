"""The cached stages before training: decode -> separate -> features, per clip.

Each clip's stem and features are stored under keys that hash everything that
produced them, so unchanged work is never redone, a killed run resumes where it
stopped, and a split's features come back as one contiguous memmap. A cache
entry that cannot be read, or whose shape or dtype is not what its key
promises, is discarded with a warning, computed again and counted in the
``*_repaired`` stats.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from toolkit.data.audio import fix_length, load_clip, resample
from toolkit.data.cache import ClipStore, ContentHashes, SplitStore, settings_key
from toolkit.disk import DiskFullError
from toolkit.progress import console, progress_bar
from toolkit.recipe.schema import PluginSpec, Recipe, feature_input, plugin_params
from toolkit.registry.kinds import FeatureExtractor, Separator
from toolkit.registry.table import Registry

STEM_FORMAT = "mono-float16-1"
"""Layout of stored stems; part of their key."""


@dataclass
class StageStats:
    """What the stages did in one run: computed versus reused, and seconds spent, per stage."""

    stems_computed: int = 0
    stems_reused: int = 0
    features_computed: int = 0
    features_reused: int = 0
    splits_assembled: int = 0
    splits_reused: int = 0
    separation_seconds: float = 0.0
    """Wall time spent separating clips (decoding included)."""
    features_seconds: float = 0.0
    """Wall time spent extracting features and assembling splits."""
    views_reused: int = 0
    """Whole data views (features and folds) a model took from memory: no stage ran."""
    stems_repaired: int = 0
    """Damaged cache entries discarded and computed again: stems, ..."""
    features_repaired: int = 0
    splits_repaired: int = 0
    hashes_repaired: int = 0
    """... clip features, assembled splits, and content-hash memo files."""

    def as_dict(self) -> dict[str, float]:
        """The counters as a plain mapping."""
        return asdict(self)

    def add(self, other: StageStats) -> None:
        """Count ``other``'s work too (another stream of the same run)."""
        for name, value in other.as_dict().items():
            setattr(self, name, getattr(self, name) + value)


def _plugin_version(registry: Registry, kind: str, name: str) -> list[str]:
    """Where a plugin comes from and the version of its output, for cache keys."""
    entry = registry.get_info(kind, name)
    return [entry.source, entry.source_version, entry.version]


def _batches(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


MIXTURE = {"name": "none"}
"""The "separator" of a stream that reads the decoded clip itself (``input: mixture``)."""


class Preprocessor:
    """Runs and caches separation and feature extraction for one feature stream of a recipe.

    ``stream`` is one of the recipe's feature blocks (default: the first); one
    with ``input: mixture`` reads the decoded clip instead of the separator's
    output, and its clips are cached as the ``none`` separator's.
    """

    def __init__(
        self, recipe: Recipe, registry: Registry, stream: PluginSpec | None = None
    ) -> None:
        self.recipe = recipe
        self.registry = registry
        self.stream = plugin_params(stream or recipe.feature_streams[0])
        reads_mixture = feature_input(stream or recipe.feature_streams[0]) == "mixture"
        self.separator_spec = MIXTURE if reads_mixture else recipe.separator
        cache_dir = Path(recipe.cache.dir)
        self.stats = StageStats()
        self.hashes = ContentHashes(cache_dir / "content_hashes.json", self._damaged("hashes"))
        self.stems = ClipStore(cache_dir / "stems", self._damaged("stems"))
        self.clip_features = ClipStore(cache_dir / "features", self._damaged("features"))
        self.splits = SplitStore(cache_dir / "splits", self._damaged("splits"))
        self._separator: Separator | None = None
        self._extractor: FeatureExtractor | None = None
        sep_entry = registry.get_info("separators", self.separator_spec["name"], "separator")
        self.separator_rate = sep_entry.input_sample_rate
        self.separator_channels = sep_entry.input_channels
        data = recipe.data
        self.decode_rate = self.separator_rate or data.sample_rate
        self.stem_settings = settings_key(
            "stem",
            STEM_FORMAT,
            self.decode_rate,
            self.separator_channels,
            data.duration,
            data.crop,
            data.sample_rate,
            self.separator_spec,
            _plugin_version(registry, "separators", self.separator_spec["name"]),
        )
        self.feature_settings = settings_key(
            "features",
            data.sample_rate,
            self.stream,
            _plugin_version(registry, "feature_extractors", self.stream["name"]),
        )

    def _damaged(self, what: str) -> Callable[[Path, str], None]:
        """What a store calls for each damaged entry it discards: warn, count the repair."""

        def report(path: Path, reason: str) -> None:
            console.print(
                f"warning: damaged cache entry {path} ({reason}); computing it again",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            name = f"{what}_repaired"
            setattr(self.stats, name, getattr(self.stats, name) + 1)

        return report

    @property
    def stem_length(self) -> int:
        """Samples of every stored stem (mono float16, at the data's rate)."""
        data = self.recipe.data
        return int(round(data.duration * data.sample_rate))

    @property
    def separator(self) -> Separator:
        """The stream's separator, built on first use."""
        if self._separator is None:
            self._separator = self.registry.create("separators", self.separator_spec, "separator")
        return self._separator

    @property
    def extractor(self) -> FeatureExtractor:
        """The stream's feature extractor, built on first use."""
        if self._extractor is None:
            self._extractor = self.registry.create("feature_extractors", self.stream, "features")
        return self._extractor

    def stem_keys(self, files: Sequence[Path]) -> list[str]:
        """The stem cache key of each file."""
        keys = [settings_key(self.hashes.digest(f), self.stem_settings) for f in files]
        self.hashes.save()
        return keys

    def feature_keys(self, stem_keys: Sequence[str]) -> list[str]:
        """The feature cache key of each clip, from its stem key."""
        return [settings_key(k, self.feature_settings) for k in stem_keys]

    def _stem_ok(self, key: str) -> bool:
        """Whether the stem under ``key`` is stored and sound (a wrong one is discarded)."""
        header = self.stems.header(key)
        if header is None:
            return False
        if header != ((self.stem_length,), np.dtype(np.float16)):
            shape, dtype = header
            expected = f"({self.stem_length},) float16"
            self.stems.discard(key, f"shape {shape} {dtype}, expected {expected}")
            return False
        return True

    def separate(self, files: Sequence[Path], label: str = "separating") -> list[str]:
        """Make sure every file's stem is cached; return the stem keys."""
        keys = self.stem_keys(files)
        todo = [i for i, k in enumerate(keys) if not self._stem_ok(k)]
        self.stats.stems_reused += len(files) - len(todo)
        if not todo:
            return keys
        data = self.recipe.data
        length = self.stem_length
        started = time.perf_counter()
        done = 0
        with (
            progress_bar(f"{label} ({self.separator_spec['name']})", len(todo)) as advance,
            ThreadPoolExecutor(max_workers=2) as pool,
        ):
            for batch in _batches(todo, self.recipe.cache.batch_size):
                waves = list(
                    pool.map(
                        lambda i: load_clip(
                            files[i],
                            self.decode_rate,
                            self.separator_channels,
                            data.duration,
                            data.crop,
                        ),
                        batch,
                    )
                )
                stems = self.separator.separate(np.stack(waves))
                for i, stem in zip(batch, stems, strict=True):
                    mono = stem.mean(axis=0, keepdims=True)
                    mono = resample(mono, self.decode_rate, data.sample_rate)
                    mono = fix_length(mono, length)[0].astype(np.float16)
                    with _needing((len(todo) - done) * mono.nbytes):
                        self.stems.put(keys[i], mono)
                    done += 1
                    self.stats.stems_computed += 1
                advance(len(batch))
        self.stats.separation_seconds += time.perf_counter() - started
        return keys

    def features(self, files: Sequence[Path], ids: Sequence[str], split: str) -> np.ndarray:
        """The split's features ``[N, C, F, T]`` (float16 memmap); computing what is missing."""
        stem_keys = self.stem_keys(files)
        keys = self.feature_keys(stem_keys)
        split_key = self.splits.key(keys)
        cached = self.splits.load(split_key, keys)
        if cached is not None:
            self.stats.features_reused += len(keys)
            self.stats.splits_reused += 1
            return cached
        todo = self._missing_features(keys)
        self.stats.features_reused += len(keys) - len(todo)
        if todo:
            self.separate([files[i] for i in todo], f"{split}: separating")
        started = time.perf_counter()
        if todo:
            self._extract(todo, stem_keys, keys, split)
        self.stats.splits_assembled += 1
        arrays = (self.clip_features.get(k) for k in keys)
        assembled = self.splits.assemble(split_key, ids, keys, arrays)
        self.stats.features_seconds += time.perf_counter() - started
        return assembled

    def _missing_features(self, keys: Sequence[str]) -> list[int]:
        """Indices of the clips whose features must be computed: not stored, unreadable, or
        unlike the others (a shape or dtype that the other clips of these settings do not
        have); the damaged ones are discarded."""
        headers = [self.clip_features.header(k) for k in keys]
        sound = Counter(h for h in headers if h is not None and h[1] == np.float16)
        usual = sound.most_common(1)[0][0] if sound else None
        todo = []
        for i, header in enumerate(headers):
            if header is not None and header != usual:
                shape, dtype = header
                self.clip_features.discard(
                    keys[i], f"shape {shape} {dtype}, the other clips' {usual[0] if usual else ''}"
                )
                header = None
            if header is None:
                todo.append(i)
        return todo

    def _extract(
        self, todo: list[int], stem_keys: Sequence[str], keys: Sequence[str], split: str
    ) -> None:
        rate = self.recipe.data.sample_rate
        done = 0
        with progress_bar(f"{split}: features ({self.stream['name']})", len(todo)) as adv:
            for batch in _batches(todo, self.recipe.cache.batch_size):
                waves = np.stack([self.stems.get(stem_keys[i]).astype(np.float32) for i in batch])
                with torch.inference_mode():
                    feats = self.extractor.extract(torch.from_numpy(waves), rate)
                feats_np = feats.detach().cpu().numpy()
                if not np.isfinite(feats_np).all():
                    raise ValueError(
                        f"feature extractor {self.stream['name']!r} returned NaN or inf"
                    )
                for i, feat in zip(batch, feats_np, strict=True):
                    stored = feat.astype(np.float16)
                    with _needing((len(todo) - done) * stored.nbytes):
                        self.clip_features.put(keys[i], stored)
                    done += 1
                self.stats.features_computed += len(batch)
                adv(len(batch))


@contextlib.contextmanager
def _needing(left: int) -> Iterator[None]:
    """A full disk inside says that the stage still needs ``left`` bytes."""
    try:
        yield
    except DiskFullError as exc:
        raise exc.needing(left) from None
