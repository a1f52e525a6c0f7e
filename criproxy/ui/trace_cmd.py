"""``criproxy trace``: each CRI call and the containerd calls it made, in a terminal.

Without ``--follow`` it prints the debug socket's ring of recent traces (oldest first, like a log)
and exits; with it, it keeps printing each call as criproxy finishes it until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import re
import sys
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from criproxy.ui import debugclient


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--follow", "-f", action="store_true", help="keep printing calls as they finish")
    p.add_argument("--json", action="store_true", help="one JSON object per CRI call")
    p.add_argument("--rpc", action="append", default=None, metavar="NAME",
                   help="only this CRI method (repeatable), e.g. RunPodSandbox")
    p.add_argument("--debug-socket", type=Path, default=None,
                   help=f"criproxy's debug socket (default {debugclient.default_socket()})")


def _short(value: str) -> str:
    """IDs and digests cut to their first 12 hex digits, as docker and crictl show them."""
    return _HEX64.sub(r"\1", value)


_HEX64 = re.compile(r"\b([0-9a-f]{12})[0-9a-f]{52}\b")


def render(entry: dict[str, Any]) -> str:
    """One CRI call as a block of text: a header line, then one indented line per containerd call."""
    when = datetime.datetime.fromtimestamp(float(entry.get("at", 0))).strftime("%H:%M:%S.%f")[:-3]
    ids = " ".join(f"{k}={_short(str(entry[k]))}" for k in ("pod", "container") if entry.get(k))
    head = f"{when} {entry['rpc']} {entry['code']} {entry['ms']:.1f}ms {ids}".rstrip()
    lines = [head]
    if entry.get("error"):
        lines.append(f"    error: {entry['error']}")
    for step in entry["steps"]:
        service, method, code, ms = step[:4]
        args = step[4] if len(step) > 4 else {}
        shown = " ".join(f"{k}={_short(str(v))}" for k, v in args.items())
        lines.append(f"    {ms:8.1f}ms  {service}.{method} {code}  {shown}".rstrip())
    for note in entry.get("notes", []):
        lines.append(f"    note: {note}")
    return "\n".join(lines)


def _emit(entry: dict[str, Any], args: argparse.Namespace, out: TextIO) -> None:
    if args.rpc and entry["rpc"] not in args.rpc:
        return
    out.write((json.dumps(entry) if args.json else render(entry)) + "\n")
    out.flush()


async def _run(args: argparse.Namespace, out: TextIO) -> int:
    sock = args.debug_socket or debugclient.default_socket()
    async with debugclient.session(sock) as http:
        if args.follow:
            async for entry in debugclient.events(http):
                _emit(entry, args, out)
        else:
            for entry in await debugclient.get_json(http, "/traces"):
                _emit(entry, args, out)
    return 0


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        return asyncio.run(_run(args, out))
    except KeyboardInterrupt:
        return 130
    except (aiohttp.ClientError, OSError) as e:
        sock = args.debug_socket or debugclient.default_socket()
        print(f"criproxy: cannot read the debug socket {sock}: {e}", file=sys.stderr)
        return 1
