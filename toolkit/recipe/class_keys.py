"""Settings keyed by class: their keys are the labels as the train CSV writes them.

A setting declares it with :data:`ClassMap` (``copies: ClassMap[int]`` in a plugin's
parameters, ``data.class_names`` in the recipe). The recipe keeps the labels as text
(YAML's ``0: 3`` is the label ``"0"``); before any audio work each key is checked to be a
label of the train CSV (:func:`check_class_keys`), and a plugin is built with the keys
turned into class indices, positions in the sorted labels (:func:`class_indexed`), the
numbers its labels arrays hold.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import pydantic
from pydantic import BeforeValidator

from toolkit.errors import DataError


class ClassKeys:
    """The marker of a :data:`ClassMap` field: its keys are class labels."""

    def __repr__(self) -> str:
        return "ClassKeys()"


CLASS_KEYS = ClassKeys()


def _keys_as_text(value: Any) -> Any:
    """A mapping's keys as text, as the train CSV's labels are."""
    if isinstance(value, Mapping):
        return {str(key): item for key, item in value.items()}
    return value


V = TypeVar("V")

ClassMap = Annotated[dict[str, V], BeforeValidator(_keys_as_text), CLASS_KEYS]
"""A mapping from class label (as written in the train CSV) to a value, e.g.
``copies: ClassMap[int]``. The toolkit checks its keys against the train CSV's labels and
builds the plugin with them as class indices (``int``, into the sorted labels)."""


def _marked(annotation: Any) -> bool:
    """Whether a type annotation is (or holds, as in ``ClassMap[str] | None``) a ClassMap."""
    metadata = getattr(annotation, "__metadata__", ()) if typing.get_origin(annotation) else ()
    if any(isinstance(m, ClassKeys) for m in metadata):
        return True
    return any(_marked(arg) for arg in typing.get_args(annotation))


def class_keyed_fields(model: type[pydantic.BaseModel]) -> list[str]:
    """The names of ``model``'s fields that are :data:`ClassMap` settings."""
    return [
        name
        for name, info in model.model_fields.items()
        if any(isinstance(m, ClassKeys) for m in info.metadata) or _marked(info.annotation)
    ]


@dataclass(frozen=True)
class ClassKeyed:
    """One class-keyed setting of a recipe: its key path and the labels it names."""

    key: str
    labels: tuple[str, ...]


def model_class_keys(model: pydantic.BaseModel, prefix: str) -> Iterator[ClassKeyed]:
    """The class-keyed settings of a validated model and of the models in it, by key path."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        key = f"{prefix}.{name}" if prefix else name
        if isinstance(value, pydantic.BaseModel):
            yield from model_class_keys(value, key)
        elif isinstance(value, Mapping) and name in class_keyed_fields(type(model)):
            yield ClassKeyed(key, tuple(str(k) for k in value))


def check_class_keys(settings: Sequence[ClassKeyed], classes: Sequence[str], csv: Path) -> None:
    """A one-line DataError for the first key of ``settings`` that is not a label."""
    for setting in settings:
        unknown = [label for label in setting.labels if label not in classes]
        if unknown:
            raise DataError(
                f"{setting.key}: {unknown[0]!r} is not a label of {csv} (its labels: "
                f"{', '.join(classes)}); remove it or name a label"
            )


def class_indexed(
    model: type[pydantic.BaseModel], params: dict[str, Any], classes: Sequence[str] | None
) -> dict[str, Any]:
    """``params`` (a dump of ``model``) with each ClassMap's labels turned into class indices.

    Labels not in ``classes`` were refused before any work (:func:`check_class_keys`);
    ``classes`` is None only where no plugin may name a class.
    """
    fields = [name for name in class_keyed_fields(model) if params.get(name)]
    if not fields:
        return params
    if classes is None:
        raise ValueError(f"{model.__name__}: {fields[0]} names classes, but no labels were given")
    index = {label: i for i, label in enumerate(classes)}
    indexed = dict(params)
    for name in fields:
        unknown = [str(k) for k in params[name] if str(k) not in index]
        if unknown:
            raise ValueError(f"{name}: {unknown[0]!r} is not a label ({', '.join(classes)})")
        indexed[name] = {index[str(k)]: v for k, v in params[name].items()}
    return indexed
