"""A container's log_path stays inside the pod's log directory (criproxy writes that file as root)."""

from __future__ import annotations

import pytest

from criproxy import errors
from criproxy.cri.container_create import _validate_log_path


@pytest.mark.parametrize("path", ["c/0.log", "c_0.log", "a/./b.log", "a/../b.log", ""])
def test_relative_paths_inside_are_accepted(path: str) -> None:
    _validate_log_path(path)


@pytest.mark.parametrize("path", ["/etc/passwd", "../x.log", "a/../../x.log", "..", ".", "a/\0b", "//x"])
def test_absolute_escaping_or_nul_paths_are_refused(path: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        _validate_log_path(path)
