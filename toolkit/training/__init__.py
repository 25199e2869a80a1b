"""Training a model: the recipe's data prepared, a backbone trained, one model run written.

``pipeline`` prepares a recipe's features and builds its plugins; ``data_views``
keeps them per process; ``trainer`` (with ``optimisation``, ``device_data``,
``fusion``, ``finetuning`` and ``calibration``) trains a backbone; ``model_run`` is
one model from its start row to its files; ``cross_validation`` and ``pseudo_labels``
are the variants of a run. A new training feature goes here.
"""
