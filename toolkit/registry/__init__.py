"""Plugins and their registry: the hooks, the plugin kinds, and how plugins are found.

``hookspecs`` and ``kinds`` are the contract a plugin meets (re-exported by
:mod:`toolkit`); ``loader`` finds the built-in, installed and recipe-named plugins;
``registration`` is the ``register`` call they make; ``table`` keeps what they
registered and builds a recipe block's plugin; ``guard`` names a plugin whose code
fails; ``listing`` and ``scaffold`` serve ``toolkit plugins`` and ``toolkit new``.
A new plugin kind starts here.
"""
