"""The project's error vocabulary.

Handlers raise these and never import grpc; the edge (grpcapi/edge.py) maps each class to a gRPC
status code in exactly one table, and the containerd wrapper maps containerd's codes into the same
classes on the way in. Because the class carries the meaning, nothing downstream has to match on
message text.
"""

from __future__ import annotations


class CriError(Exception):
    """Base of every error a CRI call may end with; the message reaches the user verbatim."""


class NotFound(CriError):
    """The object named does not exist (kubelet treats cleanup of it as done)."""


class AlreadyExists(CriError):
    """A name or ID is taken."""


class InvalidArgument(CriError):
    """The request itself is malformed; retrying it unchanged cannot succeed."""


class FailedPrecondition(CriError):
    """The object is in a state that does not allow the call (e.g. sandbox not ready)."""


class Unavailable(CriError):
    """A dependency (containerd, a registry) cannot be reached right now; a retry may succeed."""


class Unimplemented(CriError):
    """criproxy does not offer this call; kubelet falls back only on this code."""


class DeadlineExceeded(CriError):
    """The call's own time limit passed (e.g. an ExecSync timeout)."""


class Cancelled(CriError):
    """The caller went away or the operation was cancelled."""


class PermissionDenied(CriError):
    """The caller is authenticated but not allowed (a registry refusing a pull)."""


class Unauthenticated(CriError):
    """Credentials are missing or wrong (a registry asking for auth)."""


class ResourceExhausted(CriError):
    """A size or count limit was hit."""


class Internal(CriError):
    """A bug or broken invariant inside criproxy."""


class Unknown(CriError):
    """An error whose class we could not determine (containerd's UNKNOWN)."""


class StartupError(Exception):
    """A reason criproxy cannot start, phrased as the one line an operator should read.

    Not a CriError: it never answers a call; the CLI prints it and exits 1. It lives here, with the
    other errors, so a part below the server (the streaming server's start step) can raise it.
    """
