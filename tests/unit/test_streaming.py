"""Streaming pure logic: tokens, protocol dialects, status encoding, resize decoding, frames, addresses."""

from __future__ import annotations

import json
import struct

import pytest

from criproxy import errors
from criproxy.streaming import protocol as p
from criproxy.streaming.server import parse_address, url_host
from criproxy.streaming.tokens import TokenCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_is_single_use_and_kind_bound() -> None:
    cache = TokenCache(60, 10, Clock())
    t = cache.put("exec", "req")
    assert len(t) >= 20 and t != cache.put("exec", "req")
    got = cache.consume(t, "exec")
    assert got is not None and got.request == "req"
    assert cache.consume(t, "exec") is None
    t2 = cache.put("exec", "req")
    assert cache.consume(t2, "attach") is None and cache.consume(t2, "exec") is None   # burnt by misuse


def test_token_expires() -> None:
    clock = Clock()
    cache = TokenCache(60, 10, clock)
    t = cache.put("portforward", "req")
    clock.now += 60
    assert cache.consume(t, "portforward") is None


def test_limit_purges_expired_first_then_refuses() -> None:
    clock = Clock()
    cache = TokenCache(10, 2, clock)
    cache.put("exec", 1)
    clock.now += 5
    cache.put("exec", 2)
    with pytest.raises(errors.ResourceExhausted):
        cache.put("exec", 3)
    clock.now += 6                       # the first has expired, the second not
    cache.put("exec", 3)
    assert len(cache) == 2


@pytest.mark.parametrize(("name", "version", "b64"), [
    ("", 1, False), ("channel.k8s.io", 1, False), ("base64.channel.k8s.io", 1, True),
    ("v4.channel.k8s.io", 4, False), ("v4.base64.channel.k8s.io", 4, True), ("v5.channel.k8s.io", 5, False),
])
def test_dialects(name: str, version: int, b64: bool) -> None:
    d = p.dialect(name)
    assert (d.version, d.base64, d.json_status, d.close_frames) == (version, b64, version >= 4, version >= 5)


def test_choose_follows_client_order() -> None:
    assert p.choose(["v5.channel.k8s.io", "v4.channel.k8s.io"], p.WS_REMOTECOMMAND) == "v5.channel.k8s.io"
    assert p.choose(["x", "v4.channel.k8s.io"], p.WS_REMOTECOMMAND) == "v4.channel.k8s.io"
    assert p.choose([], p.WS_REMOTECOMMAND) == ""
    assert p.choose(["v5.channel.k8s.io"], p.WS_PORTFORWARD) is None


def test_status_encoding_per_dialect() -> None:
    v4, v1 = p.dialect("v4.channel.k8s.io"), p.dialect("channel.k8s.io")
    ok = p.status_success()
    assert p.encode_status(ok, v4) == b'{"metadata":{},"status":"Success"}'
    assert p.encode_status(ok, v1) is None
    failed = p.status_exit_code(["sh", "-c", "exit 3"], 3)
    assert json.loads(p.encode_status(failed, v4) or b"")["details"] == \
        {"causes": [{"reason": "ExitCode", "message": "3"}]}
    assert p.encode_status(failed, v1) == \
        b"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
    internal = p.status_internal("boom")
    assert internal["code"] == 500 and internal["reason"] == "InternalError"


def test_resize_decoder_handles_split_and_joined_objects() -> None:
    d = p.ResizeDecoder()
    assert d.feed(b'{"Width":80,') == []
    assert d.feed(b'"Height":24}{"Width":100,"Height":30}') == [(80, 24), (100, 30)]
    assert d.feed(b' {"Width":-1,"Height":5} {"nope":1} [1] {"Width":1,"Height":2}') == [(1, 2)]
    assert d.feed(b"\n") == []


@pytest.mark.parametrize("name", ["v5.channel.k8s.io", "v4.base64.channel.k8s.io"])
def test_frames_round_trip(name: str) -> None:
    d = p.dialect(name)
    frame = p.encode_frame(p.STDOUT, b"\x00hi\xff", d)
    assert isinstance(frame, str) == d.base64
    assert p.decode_frame(frame) == (p.STDOUT, b"\x00hi\xff")
    assert p.decode_frame(b"") is None
    assert p.port_prefix(8080) == b"\x90\x1f"


@pytest.mark.parametrize(("address", "parsed", "host"), [
    ("127.0.0.1:0", ("127.0.0.1", 0), "127.0.0.1"),
    ("[::1]:10010", ("::1", 10010), "[::1]"),
    (":10010", ("0.0.0.0", 10010), "127.0.0.1"),
    ("0.0.0.0:1", ("0.0.0.0", 1), "127.0.0.1"),
])
def test_addresses(address: str, parsed: tuple[str, int], host: str) -> None:
    assert parse_address(address) == parsed
    assert url_host(parsed[0]) == host


@pytest.mark.parametrize("address", ["127.0.0.1", "host:port", "1.2.3.4:70000"])
def test_bad_addresses(address: str) -> None:
    with pytest.raises(ValueError):
        parse_address(address)


# -- SPDY framing -------------------------------------------------------------------------------------
def test_spdy_dictionary_is_the_canonical_one() -> None:
    import zlib

    from criproxy.streaming.spdyframes import DICTIONARY
    # 1423 bytes, ending "enq=0." without a NUL, as Go's spdystream has it; the Adler-32 is the DICTID
    # every SPDY/3 zlib stream carries, so a wrong byte anywhere would break every header block.
    assert len(DICTIONARY) == 1423 and DICTIONARY.endswith(b",*,enq=0.")
    assert zlib.adler32(DICTIONARY) == 0xE3C6A7C2


def test_spdy_header_blocks_round_trip_across_frames() -> None:
    from criproxy.streaming import spdyframes as f

    client, server = f.Codec(), f.Codec()
    for i in range(3):                                    # one zlib stream per direction, in order
        frame = f.control_frame(f.SYN_STREAM, f.FLAG_FIN if i == 2 else 0,   # as a client opens a stream
                                struct.pack(">IIH", 2 * i + 1, 0, 0)
                                + client.encode_headers({"streamType": "stdout", "Port": str(8080 + i)}))
        control, kind, flags, length = f.parse_head(frame[:8])
        assert (control, kind, length) == (True, f.SYN_STREAM, len(frame) - 8)
        parsed = server.control(kind, flags, frame[8:])
        assert parsed.stream_id == 2 * i + 1 and parsed.fin == (i == 2)
        assert parsed.headers == {"streamtype": "stdout", "port": str(8080 + i)}
    reply = server.syn_reply(1)
    assert client.control(f.SYN_REPLY, 0, reply[8:]).headers == {}


def test_spdy_data_and_control_heads() -> None:
    from criproxy.streaming import spdyframes as f

    assert f.parse_head(f.data_frame(5, b"abc", fin=True)[:8]) == (False, 5, f.FLAG_FIN, 3)
    assert f.parse_head(f.goaway(7)[:8]) == (True, f.GOAWAY, 0, 8)
    with pytest.raises(f.ProtocolError):
        f.parse_head(b"\x80\x02\x00\x01\x00\x00\x00\x00")      # SPDY/2
    with pytest.raises(f.ProtocolError):
        f.Codec().decode_headers(b"garbage")
    assert f.parse_header_block(f.header_block({"A": "1\x002"})) == {"a": "1"}


# -- the exec process ---------------------------------------------------------------------------------
def _record(process: dict[str, object] | None) -> object:
    from criproxy.protos import cri
    from criproxy.state.container import ContainerMetadata, ContainerRecord

    return ContainerRecord(ContainerMetadata(id="c1", name="n", sandbox_id="s", config=cri.ContainerConfig(),
                                             created_at=0, image_name="", image_id="", image_ref="",
                                             process=json.dumps(process) if process is not None else ""))


def test_exec_process_replaces_args_and_sets_term_for_tty() -> None:
    from criproxy.io.exec import exec_process

    base = {"args": ["sleep", "1"], "env": ["PATH=/bin"], "cwd": "/w", "user": {"uid": 5, "gid": 6},
            "terminal": False, "consoleSize": {"height": 1, "width": 1}}
    rec = _record(base)
    plain = exec_process(rec, ["ls", "-l"], tty=False)  # type: ignore[arg-type]
    assert plain["args"] == ["ls", "-l"] and plain["terminal"] is False and plain["env"] == ["PATH=/bin"]
    assert plain["user"] == {"uid": 5, "gid": 6} and plain["cwd"] == "/w" and "consoleSize" not in plain
    tty = exec_process(rec, ["sh"], tty=True)  # type: ignore[arg-type]
    assert tty["terminal"] is True and tty["env"] == ["PATH=/bin", "TERM=xterm"]
    assert base["args"] == ["sleep", "1"] and base["env"] == ["PATH=/bin"]      # the record is untouched
    own = exec_process(_record({**base, "env": ["TERM=vt100"]}), ["sh"], tty=True)  # type: ignore[arg-type]
    assert own["env"] == ["TERM=vt100"]


def test_exec_process_needs_a_spec() -> None:
    from criproxy.io.exec import exec_process

    with pytest.raises(errors.FailedPrecondition):
        exec_process(_record(None), ["ls"], tty=False)  # type: ignore[arg-type]


def test_spdy_header_bomb_is_refused() -> None:
    import zlib

    from criproxy.streaming import spdyframes as f

    deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                               f.DICTIONARY)
    bomb = deflate.compress(b"\0" * (f.MAX_HEADER_BLOCK + 10)) + deflate.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(f.ProtocolError):
        f.Codec().decode_headers(bomb)


# -- SPDY session rules -------------------------------------------------------------------------------
@pytest.mark.parametrize(("protocol", "stdin", "tty", "expected"), [
    ("v4.channel.k8s.io", False, False, {"error", "stdout", "stderr"}),
    ("v4.channel.k8s.io", True, True, {"error", "stdin", "stdout", "resize"}),
    ("v2.channel.k8s.io", True, True, {"error", "stdin", "stdout"}),       # resize came with v3
])
def test_spdy_expected_streams(protocol: str, stdin: bool, tty: bool, expected: set[str]) -> None:
    from criproxy.streaming.spdyexec import expected_streams
    from criproxy.streaming.streams import Options

    opts = Options(stdin=stdin, stdout=True, stderr=not tty, tty=tty)
    assert expected_streams(opts, p.dialect(protocol)) == expected


def test_spdy_port_forward_pairs_by_request_id_or_kubelets_fallback() -> None:
    from criproxy.streaming.spdy import SpdyStream
    from criproxy.streaming.spdyforward import request_id

    def stream(sid: int, **headers: str) -> SpdyStream:
        return SpdyStream(None, sid, headers)  # type: ignore[arg-type]

    assert request_id(stream(5, streamtype="data", requestid="7")) == "7"
    assert request_id(stream(1, streamtype="error")) == request_id(stream(3, streamtype="data")) == "1"


@pytest.mark.parametrize("message", [b"[" * 100_000, b'{"a":' * 50 + b"1" + b"}" * 50, b"x" * 5000])
def test_resize_decoder_refuses_deep_or_huge_messages_as_protocol_errors(message: bytes) -> None:
    d = p.ResizeDecoder()
    with pytest.raises(p.ProtocolError):
        d.feed(message)


def test_resize_decoder_nesting_check_ignores_brackets_in_strings() -> None:
    d = p.ResizeDecoder()
    assert d.feed(b'{"Width":5,"Height":6,"note":"' + b"[" * 100 + b'"}') == [(5, 6)]
