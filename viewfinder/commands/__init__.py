"""CLI sub-commands, one module each; every module defines ``register(cli: click.Group)``.

Kept apart from :mod:`viewfinder.cli` so each feature (index, export, serve, train ...)
owns its command next to nothing else.
"""
from __future__ import annotations

import importlib

import click

COMMAND_MODULES: tuple[str, ...] = ("export", "serve", "index", "dataset", "train", "evaluate", "batch")


def register_all(cli: click.Group) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(cli)
