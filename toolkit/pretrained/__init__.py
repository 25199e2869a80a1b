"""Pretrained networks run in PyTorch from their published files, read without their frameworks."""
