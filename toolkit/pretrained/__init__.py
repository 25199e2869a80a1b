"""Pretrained audio encoders ported to PyTorch, with weights taken from installed packages."""
