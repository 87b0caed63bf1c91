"""The CLI's error guard: expected errors become one stderr line and an exit code, never a traceback.

Lives under ``commands/`` so the sub-command modules and :mod:`viewfinder.cli` share it
without importing the CLI module itself (which loads the sub-commands while it starts).
"""
from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable

import click

from ..errors import ViewfinderError

EXIT_INPUT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    click.echo(f"viewfinder: error: {message}", err=True)
    sys.exit(code)


def guarded(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected errors into one line + exit code; unexpected ones too, unless debugging."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ViewfinderError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except BrokenPipeError:  # output piped into `head` and closed: not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # a bug: still one line, the traceback only on request
            if os.environ.get("VIEWFINDER_DEBUG"):
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (set VIEWFINDER_DEBUG=1 for details)",
                  EXIT_INTERNAL)

    return wrapper
