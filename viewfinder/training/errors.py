"""Training errors (user-caused, so :class:`~viewfinder.errors.ViewfinderError` s: one line in the CLI)."""
from __future__ import annotations

from ..errors import ViewfinderError


class TrainingError(ViewfinderError):
    """Training cannot start or continue: bad settings, incompatible checkpoint, diverging loss ..."""


class TrainingInterrupted(TrainingError):
    """Ctrl-C (SIGINT) stopped training; a resumable checkpoint was saved first."""

    http_status = 499

    def __init__(self, message: str, checkpoint: str) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
