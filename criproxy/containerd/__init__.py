"""Async wrapper around containerd's gRPC API (one channel, namespace header, error mapping, trace)."""

from criproxy.containerd.client import Containerd

__all__ = ["Containerd"]
