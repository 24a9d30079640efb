"""Modules loaded on first use, not at import.

Every ``cloudfilm`` process (each server, worker and CLI command) imports the whole
package, but only nodule measurement and tracking use SciPy and scikit-image, which take
about half a second to import. `lazy_module` defers that cost to the first attribute
access, with the standard library's `importlib.util.LazyLoader` recipe. It lives in
domain/ because the domain modules that measure and track are its users, and domain/
imports nothing of cloudfilm outside itself.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """``name`` as a module whose code runs when an attribute is first read."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
