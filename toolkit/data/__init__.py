"""A competition's data: its folder and CSV files, its clips decoded, and the cache.

``dataset`` reads the competition folder; ``checks`` checks it against the recipe
before any audio work; ``audio`` decodes clips; ``preprocess`` runs the cached
stages (decode, separate, features) per clip into ``cache``; ``submission`` writes
Kaggle submissions and probability tables. A new input format or cached stage goes here.
"""
