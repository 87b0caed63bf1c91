"""What a stored accuracy check means for which predictor runs: the int8 or bf16 twin when it
passed, fp32 with a warning when it failed (or nothing, for ``auto`` to try the next precision).
One place for the rule, so int8 (:mod:`.precision`) and bf16 (:mod:`.bf16`) cannot drift apart."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from .int8_check import CheckResult
from .predictor import BasePredictor

log = logging.getLogger(__name__)

#: "1": keep a reduced-precision model (int8 or bf16) that failed its check (speed runs only)
UNVALIDATED_ENV = "VIEWFINDER_INT8_UNVALIDATED"

Rebuild = Callable[[Any, str, "dict[str, Any] | None"], BasePredictor]


def keep_if_checked(predictor: BasePredictor, engine: Any, precision: str, stored: dict[str, Any], rebuild: Rebuild,
                    auto_declines: bool = False) -> BasePredictor | None:
    """``predictor`` rebuilt over ``engine`` in ``precision`` if the ``stored`` check passed (or
    ``$VIEWFINDER_INT8_UNVALIDATED=1``); else fp32 with a warning, or None when ``auto_declines``."""
    name = predictor.model_name
    check = CheckResult(bool(stored["ok"]), str(stored["summary"]), dict(stored.get("figures") or {}))
    if check.ok:
        log.info("%s: running %s (%s)", name, precision, check.summary)
        return rebuild(engine, precision, check.to_dict())
    if os.environ.get(UNVALIDATED_ENV) == "1":
        log.warning("%s: %s failed its accuracy check (%s) but runs %s anyway: $%s=1 (speed runs only)",
                    name, precision, check.summary, precision, UNVALIDATED_ENV)
        return rebuild(engine, precision, check.to_dict())
    if auto_declines:
        log.info("%s: precision auto does not use %s, which failed its accuracy check (%s)", name, precision,
                 check.summary)
        return None
    log.warning("%s: %s failed its accuracy check against fp32 (%s); running fp32", name, precision, check.summary)
    return rebuild(predictor.engine, "fp32", check.to_dict())
