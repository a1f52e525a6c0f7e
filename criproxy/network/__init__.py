"""Pod networking: network namespaces and the CNI plugin chain."""
