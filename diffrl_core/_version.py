"""The version of diffrl-core (also its plugin API version: plugins declare a range of it)."""

__version__ = "0.1.0"
