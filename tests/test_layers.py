"""Import direction between packages: a lower layer never imports a higher one (issue 23)."""
from __future__ import annotations

import ast
from pathlib import Path

import viewfinder

PACKAGE_ROOT = Path(viewfinder.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, lazy (in-function) imports included."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def offenders(package: str, forbidden: str) -> list[str]:
    """Modules under ``viewfinder/<package>`` that import ``forbidden`` or anything below it."""
    found = []
    for path in sorted((PACKAGE_ROOT / package).rglob("*.py")):
        hits = {name for name in imported_modules(path) if name == forbidden or name.startswith(forbidden + ".")}
        if hits:
            found.append(f"{path.relative_to(PACKAGE_ROOT)}: {', '.join(sorted(hits))}")
    return found


def test_import_scanner_resolves_relative_imports():
    names = imported_modules(PACKAGE_ROOT / "commands" / "serve.py")
    assert "viewfinder.commands.guard.guarded" in names
    assert "viewfinder.serving.serve" in names  # a lazy import inside a function


def test_commands_do_not_import_the_cli_module():
    # cli.py loads every command module while it starts; importing it back is a cycle
    assert offenders("commands", "viewfinder.cli") == []


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


def test_engines_do_not_import_models():
    # engines run a network on a ready batch; preprocessing (the GPU decode included) is models'
    assert offenders("engines", "viewfinder.models") == []
