"""The criproxy test harness: real containerd, registry, CNI and the shim under test (see README.md)."""

from collections.abc import Callable

from .client import CriClient
from .criproxy import CriproxyProcess
from .env import Environment
from .images import Dir, Fifo, File, ImageConfig, ImageLayout, Symlink, Whiteout, build_image, busybox_layers
from .proc import HarnessError

CriproxyFactory = Callable[..., CriproxyProcess]
"""Type of the ``criproxy_factory`` fixture: ``(extra_args=(), namespace="criproxy", start=True)``."""

__all__ = ["CriClient", "CriproxyFactory", "CriproxyProcess", "Dir", "Environment", "Fifo", "File", "HarnessError",
           "ImageConfig", "ImageLayout", "Symlink", "Whiteout", "build_image", "busybox_layers"]
