"""Version: who we are. The kubelet shows runtime_name as the scheme of container IDs."""

from __future__ import annotations

from criproxy import __version__
from criproxy.app import App
from criproxy.cri import rpc
from criproxy.protos import cri

_RESPONSE = cri.VersionResponse(version="0.1.0", runtime_name="criproxy", runtime_version=__version__,
                                runtime_api_version="v1")


@rpc("Version")
async def version(app: App, request: cri.VersionRequest) -> cri.VersionResponse:
    # The answer never changes, and kubelet calls this often: one prebuilt message, no work.
    return _RESPONSE
