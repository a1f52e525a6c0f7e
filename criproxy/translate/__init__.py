"""Pure conversions between CRI messages, criproxy records and containerd/OCI objects (no I/O)."""
