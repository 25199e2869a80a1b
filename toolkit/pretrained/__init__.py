"""Pretrained audio networks run in PyTorch, their weights read from installed packages' files
without their frameworks (musicnn, the speaker encoder)."""
