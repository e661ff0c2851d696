"""The heavier ``diffrl`` subcommands, one module each (imported by :mod:`diffrl_core.cli`)."""
