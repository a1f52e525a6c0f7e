"""Streaming tests reuse the container tests' pods (``make_pod``/``pod``/``busybox``) and add clients
for the streaming server: ``wsclient.py`` (WebSocket, as kubectl/crictl speak it)."""

from __future__ import annotations

from tests.integration.containers.conftest import busybox, make_pod, pod  # noqa: F401  (fixtures)
