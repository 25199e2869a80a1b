"""``toolkit plugins`` and ``toolkit new``: list the registered plugins, or start one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from toolkit.cli.support import friendly, out


@friendly
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    recipe: Annotated[
        Path | None, typer.Option("--recipe", "-r", help="Also load this recipe's plugin files.")
    ] = None,
) -> None:
    """List every registered plugin by kind, with where it came from."""
    from toolkit.recipe.loading import plugin_files, read_recipe_file
    from toolkit.registry.listing import plugin_listing, plugin_records
    from toolkit.registry.loader import load_plugins

    files = plugin_files(read_recipe_file(recipe), recipe) if recipe else []
    registry = load_plugins(files)
    if as_json:
        typer.echo(json.dumps(plugin_records(registry), indent=2))
        return
    out.print(plugin_listing(registry, out.width))


@friendly
def new(
    kind: Annotated[str, typer.Argument(help="backbone, feature, augmenter or separator.")],
    name: Annotated[str, typer.Argument(help="Plugin name (a Python identifier).")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the file.")] = Path("."),
) -> None:
    """Scaffold a plugin file to fill in; name it under `plugins:` in a recipe."""
    from toolkit.registry.scaffold import new_plugin

    path = new_plugin(kind, name, directory)
    out.print(f"wrote {path}; add it to a recipe: plugins: [{path}]")
