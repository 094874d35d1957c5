"""The package version. A leaf: imports nothing from the package, so any module may import it."""

__version__ = "0.1.0"
