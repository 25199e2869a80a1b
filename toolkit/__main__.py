"""``python -m toolkit``: the same as the ``toolkit`` command."""

from toolkit.cli.app import main

main()
