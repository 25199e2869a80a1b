"""The recipe: the YAML file that puts a pipeline together, read and checked before any work.

``schema`` holds its typed settings, ``search`` those of its search section (the space,
sampler, pruner and profiles), ``section`` what every section shares; ``loading`` reads a
file with its ``--set`` overrides, paths and plugins; ``validation`` checks each plugin
block by its plugin; ``keypaths`` addresses a key like ``train.optimizer.lr``;
``class_keys`` the settings whose keys are the train CSV's labels.
"""
