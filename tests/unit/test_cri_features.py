"""Pure parts of the CRI v1 feature additions: the rro probe's reading of runc's features and the
checks of an rro mount where support is missing; the run_as_group check."""

from __future__ import annotations

import pytest

from criproxy import errors
from criproxy.oci import container as oc
from criproxy.oci import rro
from criproxy.protos import cri


def test_runc_features_parse() -> None:
    assert rro.runc_features_support_rro({"mountOptions": ["rbind", "rro", "ro"]})
    assert not rro.runc_features_support_rro({"mountOptions": ["rbind", "ro"]})
    assert not rro.runc_features_support_rro({})
    assert not rro.runc_features_support_rro({"mountOptions": "rro"})


async def test_missing_runc_binary_means_unsupported() -> None:
    assert await rro.runc_supports_rro("/nonexistent/runc") is False
    assert await rro.runc_supports_rro("false") is False        # exits 1: no features


async def test_probe_shares_one_answer_per_binary() -> None:
    got = await rro.probe({"a": "/nonexistent/runc", "b": "/nonexistent/runc"})
    assert got == {"a": False, "b": False}


def test_rro_mount_where_unsupported_is_refused() -> None:
    m = cri.Mount(container_path="/d", host_path="/h", readonly=True, recursive_read_only=True)
    assert oc.cri_mount(m, "/h", True)["options"] == ["rbind", "rprivate", "rro", "ro"]
    with pytest.raises(errors.InvalidArgument, match="does not support"):
        oc.cri_mount(m, "/h", False)


@pytest.mark.parametrize("mount", [
    cri.Mount(container_path="/d", host_path="/h", recursive_read_only=True),
    cri.Mount(container_path="/d", host_path="/h", readonly=True, recursive_read_only=True,
              propagation=cri.PROPAGATION_BIDIRECTIONAL),
])
def test_rro_mount_needs_readonly_and_private(mount: cri.Mount) -> None:
    with pytest.raises(errors.InvalidArgument, match="recursive read-only"):
        oc.check_recursive_read_only(mount, True)


def test_run_as_group_needs_a_user() -> None:
    sc = cri.LinuxContainerSecurityContext(run_as_group=cri.Int64Value(value=5))
    with pytest.raises(errors.InvalidArgument, match="run_as_group"):
        oc.resolve_identity(sc, "1000", oc.UserFiles())
    sc.run_as_user.value = 7
    assert oc.resolve_identity(sc, "", oc.UserFiles()).gid == 5
