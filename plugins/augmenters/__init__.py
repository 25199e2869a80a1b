"""augmenters package."""
