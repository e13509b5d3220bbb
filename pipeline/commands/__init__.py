"""Subcommands of ``python -m pipeline``."""
