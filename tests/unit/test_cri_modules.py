"""Every module in criproxy/cri/ serves an RPC: helpers live in podsandbox/, container/ and below,
so adding an RPC stays adding one module and finding an RPC stays opening one."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import criproxy.cri as cri_pkg

MODULES = sorted(m.name for m in pkgutil.iter_modules(cri_pkg.__path__))


@pytest.mark.parametrize("name", MODULES)
def test_cri_module_registers_an_rpc(name: str) -> None:
    module = importlib.import_module(f"criproxy.cri.{name}")
    served = sorted(rpc for rpc, fn in cri_pkg.load_all().items() if fn.__module__ == module.__name__)
    assert served, f"criproxy/cri/{name}.py registers no @rpc handler: it belongs in a helper package"


def test_the_check_sees_every_module() -> None:
    assert len(MODULES) >= 30 and "sandbox_run" in MODULES and "container_create" in MODULES
