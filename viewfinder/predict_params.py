"""Declared inference parameters: ``predict()`` takes the names its class declares and refuses the rest.

Pipelines and predictors each declare the keyword parameters their ``predict()`` takes (in
the spirit of mmpretrain's inferencers); a misspelt or inapplicable name is an error
rather than a silently ignored value.
"""
from __future__ import annotations

from collections.abc import Iterable

from .errors import ConfigError


def reject_unknown_params(owner: str, given: Iterable[str], accepted: Iterable[str]) -> None:
    """Raise :class:`ConfigError` naming every name in ``given`` that is not in ``accepted``.

    ``owner`` names the call in the message, e.g. ``"image_classification.predict()"``.
    """
    known = set(accepted)
    unknown = [name for name in given if name not in known]
    if not unknown:
        return
    names = ", ".join(repr(name) for name in unknown)
    noun = "parameter" if len(unknown) == 1 else "parameters"
    listed = ", ".join(sorted(known)) or "none"
    raise ConfigError(f"{owner} got unknown {noun} {names}; accepted: {listed}")
