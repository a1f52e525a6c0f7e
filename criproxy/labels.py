"""The names of the labels, extensions and annotations criproxy writes, each defined once.

Most are containerd's own (its CRI plugin, its GC, its pull and unpack): using the same names is what
lets ``ctr``, containerd's garbage collector and the built-in CRI's tooling read criproxy's objects
as their own (docs/architecture.md, "How CRI objects live in containerd"; docs/images.md).
"""

from __future__ import annotations

# ---- containerd container records (what containerd's CRI marks its containers with) ------------------
KIND = "io.cri-containerd.kind"                       # label: "sandbox" or "container"
KIND_SANDBOX = "sandbox"
KIND_CONTAINER = "container"
SANDBOX_ID = "io.cri-containerd.sandbox-id"           # label of a container: its pod's sandbox ID
SANDBOX_METADATA = "io.cri-containerd.sandbox.metadata"       # extension: the sandbox's recovery facts
CONTAINER_METADATA = "io.cri-containerd.container.metadata"   # extension: the container's
RESERVED_PREFIXES = ("containerd.io/", "io.cri-containerd")   # image labels not copied onto containers

# ---- image records, content and snapshots --------------------------------------------------------------
IMAGE_MANAGED = "io.cri-containerd.image"             # image record label: "managed" (made through CRI)
IMAGE_PINNED = "io.cri-containerd.pinned"             # image record label: never removed by kubelet GC
GC_EXPIRE = "containerd.io/gc.expire"                 # lease label: when GC may drop it
GC_REF_CONTENT = "containerd.io/gc.ref.content."      # + child key (m.<i>, config, l.<i>)
GC_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."    # + snapshotter name, on the image config
DISTRIBUTION_SOURCE = "containerd.io/distribution.source."   # + registry host
SNAPSHOT_REF = "containerd.io/snapshot.ref"           # committed snapshot label: its chain ID
UNCOMPRESSED = "containerd.io/uncompressed"           # layer blob label: its diff ID
PULL_LEASE = "criproxy.io/pull"                       # criproxy's own: a pull's lease (its CRI socket)

# ---- OCI spec annotations (read by the shim, hooks and NRI plugins) --------------------------------------
CONTAINER_TYPE = "io.kubernetes.cri.container-type"   # "sandbox" or "container"
CONTAINER_NAME = "io.kubernetes.cri.container-name"
IMAGE_NAME = "io.kubernetes.cri.image-name"
SANDBOX_ID_ANNOTATION = "io.kubernetes.cri.sandbox-id"        # also groups a pod's containers in one shim
SANDBOX_NAME = "io.kubernetes.cri.sandbox-name"
SANDBOX_NAMESPACE = "io.kubernetes.cri.sandbox-namespace"
SANDBOX_UID = "io.kubernetes.cri.sandbox-uid"
SANDBOX_LOG_DIRECTORY = "io.kubernetes.cri.sandbox-log-directory"
SANDBOX_IMAGE_NAME = "io.kubernetes.cri.podsandbox.image-name"
SANDBOX_CPU_PERIOD = "io.kubernetes.cri.sandbox-cpu-period"
SANDBOX_CPU_QUOTA = "io.kubernetes.cri.sandbox-cpu-quota"
SANDBOX_CPU_SHARES = "io.kubernetes.cri.sandbox-cpu-shares"
SANDBOX_MEMORY = "io.kubernetes.cri.sandbox-memory"
