"""``linux.cgroupsPath`` for every container of a pod, pause and workload alike, from the pod's parent.

One rule for both, the one containerd's CRI plugin applies (see docs/cgroups.md): the kubelet sends
the pod's cgroup as ``PodSandboxConfig.linux.cgroup_parent``, and its form already says which driver
made it:

* systemd driver: the slice path, ``/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice``.
  runc's systemd driver wants ``slice:prefix:name``, so the path is the last slice, the prefix
  ``cri-containerd`` and the container ID: ``kubepods-burstable-pod<uid>.slice:cri-containerd:<id>``
  (a scope ``cri-containerd-<id>.scope`` inside the pod's slice).
* cgroupfs driver: a directory path, ``/kubepods/burstable/pod<uid>``; the container's cgroup is
  the directory ``<parent>/<id>`` below it.

No parent (crictl without one, the tests): containerd's default spec places the container at
``/<namespace>/<id>`` (``/criproxy/<id>`` here, ``/k8s.io/<id>`` for its own CRI), and so does
criproxy under the cgroupfs driver. Under the systemd driver that path is not a ``slice:prefix:name``
runc accepts, so there criproxy leaves ``cgroupsPath`` out and runc picks its default scope.
"""

from __future__ import annotations

import posixpath

from criproxy import errors

SYSTEMD_PREFIX = "cri-containerd"   # the scope prefix; kubelets map runtime "containerd" to it too
SLICE_SUFFIX = ".slice"


def is_slice(parent: str) -> bool:
    """True for a systemd slice path (the driver that made the parent was systemd)."""
    return posixpath.basename(parent.rstrip("/")).endswith(SLICE_SUFFIX)


def default_parent(namespace: str, systemd: bool) -> str:
    """Where a container of a pod without a cgroup parent goes (see the module docstring)."""
    return "" if systemd or not namespace else "/" + namespace


def cgroups_path(parent: str, container_id: str, default: str = "") -> str:
    """The OCI cgroupsPath of one container of the pod whose cgroup parent is ``parent``; ``default``
    (from default_parent) stands in for a missing parent."""
    parent = parent or default
    if not parent:
        return ""
    if is_slice(parent):
        return f"{posixpath.basename(parent.rstrip('/'))}:{SYSTEMD_PREFIX}:{container_id}"
    joined = posixpath.normpath(posixpath.join(parent, container_id))
    return "/" + joined.lstrip("/") if joined.startswith("/") else joined   # "//x" is "/x", as in Go


def check_parent(parent: str, systemd: bool) -> None:
    """Refuse a parent the driver in use cannot place a container under (INVALID_ARGUMENT).

    runc's systemd driver rejects a directory path only when the task starts, and its cgroupfs
    driver would make a directory literally named ``x.slice:cri-containerd:<id>``: both mean the
    kubelet and criproxy disagree about the driver, which the operator fixes in one of them.
    """
    if not parent or is_slice(parent) == systemd:
        return
    made_by, used = ("systemd", "cgroupfs") if is_slice(parent) else ("cgroupfs", "systemd")
    raise errors.InvalidArgument(
        f"cgroup_parent {parent!r} is a {made_by} cgroup but this runtime uses the {used} cgroup driver "
        f"(set the kubelet's cgroupDriver and criproxy's cgroup_driver to the same driver)")
