"""criproxy: a CRI v1 runtime that carries every call out through containerd's own gRPC API."""

__version__ = "0.1.0"
