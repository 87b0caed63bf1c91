"""One exception tree: every ViewfinderError is defined in viewfinder/errors.py (issue 23).

Import directions (layers, no cycles) are checked by import-linter: tests/test_architecture.py.
"""
from __future__ import annotations

import viewfinder


def _all_subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _all_subclasses(sub)
    return found


def test_every_viewfinder_error_is_defined_in_viewfinder_errors():
    import importlib
    import pkgutil

    from viewfinder.errors import ViewfinderError

    for module in pkgutil.walk_packages(viewfinder.__path__, "viewfinder."):
        importlib.import_module(module.name)
    elsewhere = sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in _all_subclasses(ViewfinderError)
                       if cls.__module__.startswith("viewfinder.") and cls.__module__ != "viewfinder.errors")
    assert elsewhere == []


def test_packages_re_export_their_errors_from_the_one_tree():
    from viewfinder import datasets, engines, errors, retrieval, training

    assert engines.EngineError is errors.EngineError
    assert engines.EngineUnavailableError is errors.EngineUnavailableError
    assert engines.ExportError is errors.ExportError
    assert training.TrainingError is errors.TrainingError
    assert training.TrainingInterrupted is errors.TrainingInterrupted
    assert datasets.DatasetError is errors.DatasetError
    assert retrieval.IndexFolderGone is errors.IndexFolderGone
    assert issubclass(errors.IndexFolderGone, errors.RetrievalIndexError)
    assert issubclass(errors.UrlRefusedError, errors.InputError)
