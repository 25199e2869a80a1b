"""Built-in plugins: separators, feature extractors, augmenters, backbones."""
