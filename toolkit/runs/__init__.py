"""What a run leaves behind: which model is which, and the folder that holds it.

``model_key`` names every model; ``run_dir`` owns a run folder's file names, writers
and readers; ``staging`` and ``staged_files`` keep a folder whole while it changes;
``data_identity`` records which data a run read; ``provenance`` what reruns a model
and ``reproduce`` reruns it. A new file a run keeps goes here.
"""
