"""separators package."""
