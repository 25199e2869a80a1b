"""Which clips validate a model, and which clips must stay together.

``split`` makes the held-out part or the K folds; ``grouping`` finds the train
clips that share a source (``split.groups: auto``) from ``source_signatures`` and
``source_links``; ``leaks`` measures what an ungrouped split would leak. A new
validation scheme goes here.
"""
