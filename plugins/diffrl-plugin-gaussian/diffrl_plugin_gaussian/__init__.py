"""diffrl plugin: Gaussian actor heads (rsample) and SAC's entropy-regularized actor loss."""

__version__ = "0.1.0"
