"""The criproxy test harness: real containerd, registry, CNI and the shim under test."""
