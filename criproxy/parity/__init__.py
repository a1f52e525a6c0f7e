"""Parity with containerd's built-in CRI, measured by a diff of what each runtime stored and shows.

criproxy and the built-in CRI run on one containerd in different namespaces, so the same CRI request
can be sent to both and the results compared: the OCI runtime specs and container records each wrote
(``spec``), and what a process inside each container sees (``probe``). Everything here is pure except
``spec.fetch_container``; ``tests/parity`` drives the CRI matrix and a later ``criproxy compare``
command reuses the same pieces.

- ``spec``: fetch a container record and decode its spec (an ``Any`` holding JSON).
- ``normalise``: map what MUST differ (IDs, namespace names, runtime dirs, netns paths, IPs,
  timestamps) to placeholders, never dropping a field.
- ``diff``: compare two JSON documents and name every difference by a JSON path.
- ``probe``: the shell probe run in both containers and the parser of its output.
- ``catalogue``: the list of intended differences (docs/parity.md) and matching against it.
"""

from criproxy.parity.catalogue import Catalogue, Entry, Verdict, judge, parse_catalogue
from criproxy.parity.diff import Difference, diff
from criproxy.parity.normalise import Normaliser
from criproxy.parity.probe import PROBE_SCRIPT, parse_probe, probe_document

__all__ = [
    "PROBE_SCRIPT", "Catalogue", "Difference", "Entry", "Normaliser", "Verdict", "diff", "judge",
    "parse_catalogue", "parse_probe", "probe_document",
]
