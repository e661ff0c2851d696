"""diffrl plugin: exploration noise as action post-processors."""

__version__ = "0.1.0"
