"""Lazy package exports (PEP 562): a package names its public objects and the modules that define them, and a
module is imported only when one of its names is first asked for, so ``import rubrickit.rubric`` does not load the
judge, the generators, jinja2 or numpy."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str],
                 namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps a public name to ``"module"`` or
    ``"module:attribute"`` (relative to the package, e.g. ``".rubric:load_rubric"``). A resolved name is stored in
    ``namespace`` (the package's globals), so each is looked up once."""

    def __getattr__(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, _, attribute = target.partition(":")
        module = importlib.import_module(module_name, package)
        value = getattr(module, attribute or name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
