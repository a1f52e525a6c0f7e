"""``criproxy compare``: one CRI workload against two CRI endpoints, side by side.

The tool is a CRI *client*: it drives endpoint A and endpoint B (usually criproxy and containerd's
built-in CRI on the same containerd) with the same scripted calls, interleaved so CPU steal and
cache state hit both alike, and reports per RPC the latency percentiles of each side and their ratio
A / B, where the status codes differ, where the answers differ once IDs, timestamps and IPs are
masked, and (given containerd's address) where the OCI specs each side stored for the same
CreateContainer request differ, using ``criproxy.parity``.

- ``stats``: percentiles and the per-RPC summary.
- ``mask``: an answer as JSON with what must differ between runtimes masked.
- ``session``: the two sides, the timed call recorder, the spec fetch.
- ``scenarios``: the workloads (pod lifecycle … kubelet-like polling).
- ``report``: the JSON document and the terminal table; ``html``: the self-contained HTML report.
- ``command``: the ``compare`` subcommand's options and its run.

It imports only the protos and the parity module of criproxy, never the server's internals.
"""
