"""Package exports loaded on first use, so `import visreward` does not import every framework."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, str]):
    """A module __getattr__ that imports `name` from its module the first time it is asked for; a module is named
    relative to `package` ("best_of_n", or "..io.pairs" as in a relative import)."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = exports[name] if exports[name].startswith(".") else "." + exports[name]
        return getattr(importlib.import_module(module, package), name)

    return __getattr__
