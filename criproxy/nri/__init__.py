"""NRI, the Node Resource Interface: plugins that see pod and container events and adjust containers.

``ttrpc`` is the transport (containerd's small RPC protocol), ``mux`` the connection multiplexing NRI
runs over a plugin's single socket. docs/nri.md describes the flow and what is built so far.
"""
