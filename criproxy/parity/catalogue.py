"""The list of intended differences (docs/parity.md) and the judgement of a run against it.

The list is a markdown table whose rows read ``| `path pattern`, … | `case pattern`, … | reason |``,
or with a fourth cell before the reason naming the containerd releases it applies to (``1.6``,
``1.7, 2.1``; ``*`` or empty for all), since the reference behaviour moves between releases.
A pattern is literal except ``*``, which matches any run of characters (dots and brackets too), so
``spec.process.rlimits[*]`` names every rlimit. The case cell is ``*`` (every case) or a
comma-separated list of case patterns. A row with several path patterns is one entry per pattern
(one reason for a difference seen at several paths). Every difference a run finds must match an entry, and every
entry must match a difference of the run, so the list can neither hide a new difference nor keep a
fixed one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from criproxy.parity.diff import Difference

_ROW = re.compile(r"^\|([^|]*)\|([^|]*)\|(?:([^|]*)\|)?(.*)\|\s*$")
_PATTERN = re.compile(r"`([^`]+)`")


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$")


@dataclass(frozen=True)
class Entry:
    """One intended difference: which paths, in which cases, and why."""

    path: str
    cases: tuple[str, ...]
    reason: str
    line: int = 0
    releases: tuple[str, ...] = ("*",)

    def applies_to(self, release: str) -> bool:
        """Whether this entry is about ``release`` (``1.7``) of containerd."""
        return any(r == "*" or r == release for r in self.releases)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_path_re", _glob(self.path))
        object.__setattr__(self, "_case_res", tuple(_glob(c) for c in self.cases))

    def matches(self, case: str, path: str) -> bool:
        path_re: re.Pattern[str] = getattr(self, "_path_re")  # noqa: B009 (set in __post_init__)
        case_res: tuple[re.Pattern[str], ...] = getattr(self, "_case_res")  # noqa: B009
        return bool(path_re.match(path)) and any(r.match(case) for r in case_res)

    def __str__(self) -> str:
        return f"line {self.line}: `{self.path}` cases {','.join(self.cases)}"


Catalogue = list[Entry]


def parse_catalogue(text: str) -> Catalogue:
    """Entries of every table row in ``text`` whose first cell holds backticked patterns.

    A row without a reason is an error: the list exists to say why.
    """
    entries: list[Entry] = []
    for n, line in enumerate(text.splitlines(), 1):
        m = _ROW.match(line.strip())
        patterns = _PATTERN.findall(m.group(1)) if m else []
        if not m or not patterns:
            continue
        cases = _cell_list(m.group(2))
        releases = _cell_list(m.group(3) or "")
        reason = m.group(4).strip()
        if not reason:
            raise ValueError(f"docs/parity.md line {n}: {m.group(1).strip()} has no reason")
        entries += [Entry(p.strip(), cases, reason, n, releases) for p in patterns]
    return entries


def _cell_list(cell: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in cell.replace("`", "").split(",") if c.strip()) or ("*",)


@dataclass
class Verdict:
    """Which entry explained which differences, what nothing explained, which entries went unused."""

    matched: dict[Entry, list[tuple[str, Difference]]] = field(default_factory=dict)
    unexpected: list[tuple[str, Difference]] = field(default_factory=list)
    unused: list[Entry] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unexpected and not self.unused


def judge(found: Iterable[tuple[str, Difference]], catalogue: Catalogue, release: str = "*") -> Verdict:
    """Match each ``(case, difference)`` with the first entry about ``release`` that names it; the
    unused entries are those about ``release`` that matched nothing."""
    verdict = Verdict()
    catalogue = [e for e in catalogue if release == "*" or e.applies_to(release)]
    for case, d in found:
        entry = next((e for e in catalogue if e.matches(case, d.path)), None)
        if entry is None:
            verdict.unexpected.append((case, d))
        else:
            verdict.matched.setdefault(entry, []).append((case, d))
    verdict.unused = [e for e in catalogue if e not in verdict.matched]
    return verdict
