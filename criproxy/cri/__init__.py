"""CRI semantics, one module per RPC (``sandbox_run.py``, ``container_start.py`` …).

Each module registers its handler with ``@rpc("MethodName")``. The edge serves every method of the
CRI services; a method nobody registered answers UNIMPLEMENTED naming itself, which is the only code
that makes a kubelet fall back. Adding an RPC therefore means adding one module, nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

HANDLERS: dict[str, Callable[..., Any]] = {}


def rpc(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(app, request)`` as the handler of CRI method ``name`` (unary: coroutine;
    server streaming: async generator)."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in HANDLERS:
            raise RuntimeError(f"two handlers for CRI method {name}")
        HANDLERS[name] = fn
        return fn
    return deco


def load_all() -> dict[str, Callable[..., Any]]:
    """Import every handler module so their registrations take effect."""
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
    return HANDLERS
