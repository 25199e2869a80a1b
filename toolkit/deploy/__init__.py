"""A finished run put to use: predicting new clips, and an export that does so offline.

``chosen`` reads which models make a run's submission; ``trained`` finds a trained
model again in its folder; ``prediction`` predicts new clips with them; ``export``
writes a folder that installs with no network (its ``wheels``) and ``export_check``
tries it as a notebook would.
"""
