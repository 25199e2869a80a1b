"""Every toolkit hook, one per plugin kind.

Each hook receives ``register(name, factory, *, params=None, description="")``
and calls it once per thing it contributes. Registration only records a
callable: nothing heavy is built until the engine calls ``create``.

The recipe's parameters of a plugin are validated once, against ``params``
(a pydantic model; derived from the factory's signature when omitted), when
the recipe is loaded; the factory is called with the validated values and
need not check them again. Separators and feature extractors also declare, as
further keywords of ``register``, what the engine needs to know before building
them (see their hooks); other kinds passing those keywords fail to load.
"""

from __future__ import annotations

import pluggy

PROJECT = "toolkit"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_separators(register):  # type: ignore[no-untyped-def]
    """Register source separators that turn a clip into the stem to classify.

    Called once per run, after all plugins are loaded.

    ``register(name, factory, *, params=None, description="",
    input_sample_rate=None, input_channels=1, version="1")`` accepts a
    name unique across all plugins, a factory returning a
    :class:`toolkit.Separator`, and optionally a pydantic model of the
    factory's parameters (derived from the factory's signature otherwise).

    The registration declares what the engine feeds the separator: clips
    decoded at ``input_sample_rate`` (``None``: the data's ``sample_rate``) with
    ``input_channels`` channels (mono is duplicated, more channels are averaged
    first). ``version`` enters the cache key of every stem: bump it when the
    output changes for the same settings. The separator maps a batch of
    equal-length waveforms ``float32 [B, C, T]`` to the stem ``float32 [B, C',
    T]`` at the same rate. It must be deterministic.

    Example::

        @hookimpl
        def register_separators(register):
            register(
                "identity",
                Identity,
                input_sample_rate=None,
                input_channels=1,
                version="1",
                description="keep the mixture",
            )

    In a recipe::

        separator: {name: identity}
    """


@hookspec
def register_feature_extractors(register):  # type: ignore[no-untyped-def]
    """Register feature extractors that turn mono waveforms into 2-D features.

    Called once per run, after all plugins are loaded.

    ``register(name, factory, *, params=None, description="", version="1")``:
    the factory returns a :class:`toolkit.FeatureExtractor`, whose
    ``extract(waves, sample_rate)`` maps ``float32 [B, T]`` to ``float32 [B, C,
    F, T']`` with the same shape for every clip of one length. It must be
    deterministic: its output is cached by the settings it was built with and
    ``version``; bump ``version`` when the output changes for the same settings.

    Example::

        @hookimpl
        def register_feature_extractors(register):
            register("mfcc", Mfcc, version="1", description="MFCC coefficients")

    In a recipe::

        features: {name: mfcc, n_mfcc: 40}
    """


@hookspec
def register_augmenters(register):  # type: ignore[no-untyped-def]
    """Register training-data augmenters.

    Called once per run, after all plugins are loaded.

    ``register(name, factory, *, params=None, description="", version="1")``: the
    factory returns a :class:`toolkit.DatasetAugmenter` (run once on the training part
    of the split, it returns extra examples to append) or a
    :class:`toolkit.BatchAugmenter` (run on every training batch, on the
    training device, it returns the mixed inputs and soft targets).
    Augmenters never see validation or test data, except a
    :class:`toolkit.TestTimeAugmenter` named in ``predict.tta``: its views of
    validation and test features are predicted and averaged with the features'
    own predictions. ``version`` is shown by ``toolkit plugins`` and recorded
    on every leaderboard row that used the augmenter.

    Example::

        @hookimpl
        def register_augmenters(register):
            register("gain", RandomGain, description="random gain in dB")

    In a recipe::

        augmenters:
          - {name: gain, max_db: 6}
    """


@hookspec
def register_backbones(register):  # type: ignore[no-untyped-def]
    """Register model backbones that classify feature maps.

    Called once per run, after all plugins are loaded.

    ``register(name, factory, *, params=None, description="", version="1",
    streams="stack")``: the factory
    is called as ``factory(num_classes=K, in_channels=C, **params)`` and returns
    a ``torch.nn.Module`` mapping ``float32 [B, C, F, T]`` to logits
    ``float32 [B, K]``. ``num_classes`` and ``in_channels`` come from the data,
    never from the recipe; so does ``layout`` (a :class:`toolkit.training.fusion.Layout`:
    each feature stream's block and shape, and where it lies in the input), given
    to a factory that has a ``layout`` parameter. ``version`` is shown by
    ``toolkit plugins`` and recorded on every leaderboard row that used the backbone.

    ``streams`` says how several feature streams reach it: ``stack`` (channels of
    one map; the streams must share a shape), ``concat`` (each pooled over its
    windows, mean and spread, one vector) or ``pack`` (each flattened, one
    ``[1, 1, D]`` row per clip; ``layout.parts(x)`` cuts a batch back into the
    streams).

    The module may also have the optional members of
    :class:`toolkit.registry.kinds.FineTunable` (parameter groups with their own learning
    rates, a hook at the start of each epoch to freeze or unfreeze layers, raw
    input without the trainer's standardisation), which the trainer uses when
    present.

    Example::

        @hookimpl
        def register_backbones(register):
            register("tiny_cnn", TinyCnn, description="two conv layers")

    In a recipe::

        model:
          backbone: {name: tiny_cnn, width: 32}
    """
