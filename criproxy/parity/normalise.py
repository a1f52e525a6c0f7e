"""Map what MUST differ between two runtimes to placeholders, keeping every field.

Two runtimes given the same CRI request still differ in things no pod can observe as behaviour:
the IDs they chose, their containerd namespace, where they keep their own files (bundle, state,
hosts/resolv.conf copies), the pod's netns path, the pod IP from each one's CNI network. A
``Normaliser`` per side rewrites those inside every string (values and keys) to the same
placeholder on both sides, so what is left after the rewrite is a real difference. Nothing is
dropped: a path only one side has still shows up, as ``<runtime-dir>/...``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

RUNTIME_DIR = "<runtime-dir>"
NAMESPACE = "<ns>"

_GENERIC: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"/proc/\d+/ns/"), "/proc/<pid>/ns/"),
)


class Normaliser:
    """Rewrites one side's strings: literals (IDs, paths, IPs) first, longest first, then the
    runtime's own dirs, then its namespace name where it stands as a path segment.

    Placeholders given as literals should avoid ``:`` ``,`` ``=`` and spaces, which end a path.
    """

    def __init__(self, literals: Mapping[str, str] | None = None, dirs: Iterable[str] = (),
                 namespace: str | None = None) -> None:
        self.literals = {k: v for k, v in (literals or {}).items() if k}
        self.dirs = sorted({d.rstrip("/") for d in dirs if d.strip("/")}, key=len, reverse=True)
        self.namespace = namespace
        self._literal_re = (re.compile("|".join(re.escape(k) for k in sorted(self.literals, key=len, reverse=True)))
                            if self.literals else None)
        self._dir_re = (re.compile("(?:" + "|".join(re.escape(d) for d in self.dirs) + r")(?=/|$|[\s,:;=\"'])"
                                   r"(/[^\s,:;=\"']*)?") if self.dirs else None)
        self._ns_re = re.compile(rf"(?<=/){re.escape(namespace)}(?=/|$)") if namespace else None

    def with_literals(self, more: Mapping[str, str]) -> Normaliser:
        """A copy that also rewrites ``more`` (e.g. a container's own ID once it exists)."""
        return Normaliser({**self.literals, **more}, self.dirs, self.namespace)

    def text(self, s: str) -> str:
        if self._literal_re is not None:
            s = self._literal_re.sub(lambda m: self.literals[m.group(0)], s)
        if self._dir_re is not None:
            s = self._dir_re.sub(_under_runtime_dir, s)
        if self._ns_re is not None:
            s = self._ns_re.sub(NAMESPACE, s)
        for pattern, repl in _GENERIC:
            s = pattern.sub(repl, s)
        return s

    def __call__(self, doc: Any) -> Any:
        """``doc`` with every string (and dict key) rewritten; structure and other values kept."""
        if isinstance(doc, str):
            return self.text(doc)
        if isinstance(doc, dict):
            return {self.text(k) if isinstance(k, str) else k: self(v) for k, v in doc.items()}
        if isinstance(doc, list):
            return [self(v) for v in doc]
        return doc


def _under_runtime_dir(m: re.Match[str]) -> str:
    """A path under a runtime's own dir: the layout below the dir is that runtime's business, so
    keep only what follows the first placeholder (``<pod>/hosts``), or the whole rest if none, with
    the hex names it chose for its own files (``volumes/3f2a…``) as ``<id>``."""
    rest = m.group(1) or ""
    i = rest.find("<")
    if i > 0:
        rest = "/" + rest[i:]
    return RUNTIME_DIR + _RUNTIME_ID.sub("<id>", rest)


# Names a runtime picks for its own files (volume dirs, FIFOs): long hex runs below its dirs.
_RUNTIME_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{16,}(?![0-9a-f])")
