"""diffrl plugin: a Beta-distribution actor head for bounded actions."""

__version__ = "0.1.0"
