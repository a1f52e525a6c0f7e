"""Command line: ``criproxy serve``, ``criproxy compare`` (two CRI endpoints side by side),
``criproxy trace`` and ``criproxy ui`` (the translation trace, in a terminal or a local web page) and
``criproxy version``.

Every setting of config.Config is also a flag (``--containerd-address`` for ``containerd_address``),
generated from the model so the two never drift. Errors an operator can fix are one line and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, NoReturn, get_args, get_origin

from pydantic.fields import FieldInfo

from criproxy import __version__
from criproxy.config import Config, ConfigError, load


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"criproxy: error: {message} (see '{self.prog} --help')\n")


def _default_text(name: str, value: Any) -> str:
    """A default as an operator types it: paths plain, modes in octal, lists comma-separated."""
    if name.endswith("_mode") and isinstance(value, int):
        return f"{value:04o}"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return "none" if value is None else str(value)


def _help(name: str, field: FieldInfo) -> str:
    default = field.get_default(call_default_factory=True)
    text = field.description or name.replace("_", " ")
    return text if default is None else f"{text} (default {_default_text(name, default)})"


def _add_setting_flags(p: argparse.ArgumentParser) -> None:
    for name, field in Config.model_fields.items():
        flag = "--" + name.replace("_", "-")
        ann = field.annotation
        help_text = _help(name, field).replace("%", "%%")
        if get_origin(ann) is list:
            p.add_argument(flag.rstrip("s"), dest=name, action="append", default=None, help=help_text)
        elif get_origin(ann) is dict:
            continue  # tables (runtime handlers) come from the config file only
        elif ann is bool:
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            choices = list(get_args(ann)) if get_args(ann) and all(isinstance(a, str) for a in get_args(ann)) \
                else None
            p.add_argument(flag, dest=name, default=None, choices=choices, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="criproxy", description="A CRI v1 runtime on containerd's own API.")
    parser.add_argument("--version", action="version", version=f"criproxy {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    serve = sub.add_parser("serve", help="serve the CRI socket")
    serve.add_argument("--config", type=Path, default=None, help="TOML config file")
    _add_setting_flags(serve)
    sub.add_parser("version", help="print the version")
    compare = sub.add_parser("compare", help="run one CRI workload against two CRI endpoints and report "
                                             "latency, status and answer/spec differences side by side",
                             description="Run the same scripted CRI workload against endpoints A and B, "
                                         "interleaved, and report per RPC p50/p95/p99 of each and A / B.")
    from criproxy.compare.command import add_arguments

    add_arguments(compare)
    from criproxy.ui import trace_cmd, web

    trace_cmd.add_arguments(sub.add_parser(
        "trace", help="print each CRI call and the containerd calls it made (from the debug socket)"))
    web.add_arguments(sub.add_parser(
        "ui", help="serve a local web page of CRI calls as they arrive, expandable into containerd calls"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "version":
        print(f"criproxy {__version__}")
        return 0
    if args.cmd == "compare":
        from criproxy.compare.command import run as run_compare

        return run_compare(args)
    if args.cmd in ("trace", "ui"):
        from criproxy.ui import trace_cmd, web

        return trace_cmd.run(args) if args.cmd == "trace" else web.run(args)
    flags: dict[str, Any] = {k: v for k, v in vars(args).items() if k not in ("cmd", "config")}
    try:
        cfg = load(args.config, flags)
    except ConfigError as e:
        print(f"criproxy: {e}", file=sys.stderr)
        return 2
    return run(cfg)


def run(cfg: Config) -> int:
    from criproxy import logsetup
    from criproxy.errors import StartupError
    from criproxy.server import serve

    logsetup.setup(cfg.log_level, cfg.log_format)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency, but keep running without it
        pass
    try:
        asyncio.run(serve(cfg))
    except StartupError as e:
        print(f"criproxy: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
