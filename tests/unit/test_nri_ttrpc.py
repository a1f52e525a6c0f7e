"""ttrpc and NRI's mux against byte streams written out by hand from the wire facts (docs/nri.md).

The expected bytes are literals: a 10-byte ttrpc header (length, stream id, type, flags), a
``ttrpc.Request`` envelope encoded field by field, an 8-byte mux header (connection id, length). Peers
are real unix socketpairs; the "plugin" side of each test is raw bytes, so nothing is checked against
the code under test.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import pytest

from criproxy._gen.nri import api_pb2
from criproxy.nri import mux, ttrpc

RUNTIME = "nri.pkg.api.v1alpha1.Runtime"
PLUGIN = "nri.pkg.api.v1alpha1.Plugin"

# Runtime.RegisterPlugin{plugin_name="test", plugin_idx="10"} as a ttrpc request on stream 1.
REGISTER_PAYLOAD = bytes.fromhex("0a04") + b"test" + bytes.fromhex("1202") + b"10"
REGISTER_ENVELOPE = (bytes.fromhex("0a1c") + RUNTIME.encode() + bytes.fromhex("120e") + b"RegisterPlugin"
                     + bytes.fromhex("1a0a") + REGISTER_PAYLOAD)
REGISTER_MESSAGE = bytes.fromhex("0000003a" "00000001" "01" "00") + REGISTER_ENVELOPE
# The empty success reply on stream 1: no status, empty payload -> zero data bytes.
EMPTY_REPLY = bytes.fromhex("00000000" "00000001" "02" "00")


async def _pair() -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter],
                          tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return await asyncio.open_unix_connection(sock=a), await asyncio.open_unix_connection(sock=b)


async def _read_exactly(reader: asyncio.StreamReader, n: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(n), 10)


def test_envelope_literal_matches_generated_request() -> None:
    """The hand-written envelope decodes as the contract's ttrpc.Request (field numbers 1, 2, 3)."""
    from criproxy._gen.ttrpc import request_pb2
    env = request_pb2.Request.FromString(REGISTER_ENVELOPE)
    assert (env.service, env.method, env.timeout_nano) == (RUNTIME, "RegisterPlugin", 0)
    req = api_pb2.RegisterPluginRequest.FromString(env.payload)
    assert (req.plugin_name, req.plugin_idx) == ("test", "10")


def test_decoder_splits_reassembles_and_skips_oversized() -> None:
    dec = ttrpc.FrameDecoder(max_data=16)
    stream = REGISTER_MESSAGE[:5]
    assert dec.feed(stream) == []
    dec = ttrpc.FrameDecoder()
    frames = [f for i in range(0, len(REGISTER_MESSAGE), 7) for f in dec.feed(REGISTER_MESSAGE[i:i + 7])]
    assert [(f.stream_id, f.mtype, f.flags, f.data) for f in frames] == [(1, 1, 0, REGISTER_ENVELOPE)]
    # An oversized message (limit 16 here) is reported without its body, then the next one decodes.
    small = ttrpc.FrameDecoder(max_data=16)
    big = bytes.fromhex("00000020" "00000003" "01" "00") + b"x" * 32
    ok = bytes.fromhex("00000002" "00000005" "01" "00") + b"ok"
    got = small.feed(big[:20]) + small.feed(big[20:] + ok)
    assert [(f.stream_id, f.data) for f in got] == [(3, None), (5, b"ok")]


def test_encode_refuses_over_limit() -> None:
    with pytest.raises(ttrpc.TtrpcError) as err:
        ttrpc.encode_message(1, ttrpc.TYPE_REQUEST, b"\0" * (ttrpc.MAX_DATA + 1))
    assert err.value.code == 8
    assert ttrpc.encode_message(7, 2, b"ab", 1) == bytes.fromhex("00000002" "00000007" "02" "01") + b"ab"


Peer = tuple[list[api_pb2.RegisterPluginRequest], asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def runtime_server() -> AsyncIterator[Peer]:
    """A ttrpc server for Runtime.RegisterPlugin on a plain socket; yields what it got and the raw peer."""
    seen: list[api_pb2.RegisterPluginRequest] = []
    gate = asyncio.Event()

    async def register(req: object) -> api_pb2.Empty:
        assert isinstance(req, api_pb2.RegisterPluginRequest)
        seen.append(req)
        if req.plugin_name == "slow":
            await gate.wait()
        if req.plugin_name == "bad":
            raise ttrpc.TtrpcError(3, "bad name")
        if req.plugin_name == "boom":
            raise RuntimeError("bug")
        return api_pb2.Empty()

    (sr, sw), (pr, pw) = await _pair()
    server = ttrpc.Server(ttrpc.StreamChannel(sr, sw),
                          {RUNTIME: {"RegisterPlugin": ttrpc.Method(api_pb2.RegisterPluginRequest, register)}})
    server.start()
    yield seen, pr, pw
    gate.set()
    pw.close()
    await server.close()


async def test_server_answers_recorded_request(runtime_server: Peer) -> None:
    seen, pr, pw = runtime_server
    pw.write(REGISTER_MESSAGE)
    await pw.drain()
    assert await _read_exactly(pr, 10) == EMPTY_REPLY
    assert [(r.plugin_name, r.plugin_idx) for r in seen] == [("test", "10")]


async def _status_reply(pr: asyncio.StreamReader) -> tuple[int, int, bytes]:
    length, sid, mtype, flags = struct.unpack(">IIBB", await _read_exactly(pr, 10))
    assert (mtype, flags) == (2, 0)
    return sid, length, await _read_exactly(pr, length)


async def test_server_status_codes(runtime_server: Peer) -> None:
    _, pr, pw = runtime_server

    def request(sid: int, service: str, method: str, payload: bytes) -> bytes:
        env = (b"\x0a" + bytes([len(service)]) + service.encode() + b"\x12" + bytes([len(method)])
               + method.encode() + b"\x1a" + bytes([len(payload)]) + payload)
        return struct.pack(">IIBB", len(env), sid, 1, 0) + env

    # Unknown method -> UNIMPLEMENTED (12): Response{status{code=12, ...}} starts 0a <len> 08 0c.
    pw.write(request(1, RUNTIME, "Nope", b""))
    sid, _, data = await _status_reply(pr)
    assert sid == 1 and data[2:4] == b"\x08\x0c"
    # Handler status error -> that code (3); handler bug -> UNKNOWN (2).
    pw.write(request(3, RUNTIME, "RegisterPlugin", b"\x0a\x03bad"))
    sid, _, data = await _status_reply(pr)
    assert sid == 3 and data[2:4] == b"\x08\x03" and b"bad name" in data
    pw.write(request(5, RUNTIME, "RegisterPlugin", b"\x0a\x04boom"))
    sid, _, data = await _status_reply(pr)
    assert sid == 5 and data[2:4] == b"\x08\x02"
    # An even or non-increasing stream id -> INVALID_ARGUMENT (3) on that id.
    pw.write(request(4, RUNTIME, "RegisterPlugin", b"\x0a\x01a"))
    sid, _, data = await _status_reply(pr)
    assert sid == 4 and data[2:4] == b"\x08\x03"
    pw.write(request(5, RUNTIME, "RegisterPlugin", b"\x0a\x01a"))
    sid, _, data = await _status_reply(pr)
    assert sid == 5 and data[2:4] == b"\x08\x03"
    # Oversized request -> RESOURCE_EXHAUSTED (8), body skipped, the connection still serves.
    pw.write(struct.pack(">IIBB", ttrpc.MAX_DATA + 1, 7, 1, 0) + b"\0" * (ttrpc.MAX_DATA + 1))
    sid, _, data = await _status_reply(pr)
    assert sid == 7 and data[2:4] == b"\x08\x08"
    pw.write(REGISTER_MESSAGE[:4] + struct.pack(">I", 9) + REGISTER_MESSAGE[8:])
    assert await _read_exactly(pr, 10) == bytes.fromhex("00000000" "00000009" "02" "00")


async def test_replies_out_of_order_are_matched_by_stream_id(
        runtime_server: Peer) -> None:
    """A slow call does not hold back a later one: the server runs handlers concurrently."""
    seen, pr, pw = runtime_server
    slow = api_pb2.RegisterPluginRequest(plugin_name="slow").SerializeToString()
    env = b"\x0a\x1c" + RUNTIME.encode() + b"\x12\x0eRegisterPlugin\x1a" + bytes([len(slow)]) + slow
    pw.write(struct.pack(">IIBB", len(env), 1, 1, 0) + env)
    pw.write(REGISTER_MESSAGE[:4] + struct.pack(">I", 3) + REGISTER_MESSAGE[8:])
    assert await _read_exactly(pr, 10) == bytes.fromhex("00000000" "00000003" "02" "00")
    assert [r.plugin_name for r in seen] == ["slow", "test"]


async def test_client_against_raw_peer() -> None:
    """The client sends odd increasing ids with the deadline in timeout_nano and decodes the reply."""
    (cr, cw), (pr, pw) = await _pair()
    client = ttrpc.Client(ttrpc.StreamChannel(cr, cw))
    client.start()
    call = asyncio.ensure_future(client.call(PLUGIN, "Configure", api_pb2.ConfigureRequest(runtime_name="x"),
                                             api_pb2.ConfigureResponse, timeout=5.0))
    length, sid, mtype, flags = struct.unpack(">IIBB", await _read_exactly(pr, 10))
    env = await _read_exactly(pr, length)
    assert (sid, mtype, flags) == (1, 1, 0)
    assert env.startswith(b"\x0a\x1b" + PLUGIN.encode() + b"\x12\x09Configure\x1a\x03\x12\x01x")
    assert env[-6:-5] == b"\x20"            # field 4 (timeout_nano, varint): 5e9 ns = 5 varint bytes
    assert env[-5:] == bytes.fromhex("80e497d012")
    # Reply: Response{payload=ConfigureResponse{events=0x3fff}} = 12 03 | 10 ff 7f.
    pw.write(bytes.fromhex("00000005" "00000001" "02" "00" "1203" "10ff7f"))
    await pw.drain()
    resp = await asyncio.wait_for(call, 10)
    assert resp.events == 0x3FFF
    # Second call uses id 3; a failure status raises with its code.
    call = asyncio.ensure_future(client.call(PLUGIN, "Configure", api_pb2.ConfigureRequest(),
                                             api_pb2.ConfigureResponse, timeout=None))
    length, sid, _, _ = struct.unpack(">IIBB", await _read_exactly(pr, 10))
    await _read_exactly(pr, length)
    assert sid == 3
    pw.write(bytes.fromhex("00000006" "00000003" "02" "00" "0a04" "0809" "1200"))
    with pytest.raises(ttrpc.TtrpcError) as err:
        await asyncio.wait_for(call, 10)
    assert err.value.code == 9
    # A peer that never answers: DEADLINE_EXCEEDED; a peer that hangs up: UNAVAILABLE.
    with pytest.raises(ttrpc.TtrpcError) as err:
        await client.call(PLUGIN, "Configure", api_pb2.ConfigureRequest(), api_pb2.ConfigureResponse, timeout=0.2)
    assert err.value.code == 4
    call = asyncio.ensure_future(client.call(PLUGIN, "Configure", api_pb2.ConfigureRequest(),
                                             api_pb2.ConfigureResponse, timeout=None))
    await _read_exactly(pr, 10)
    pw.close()
    with pytest.raises(ttrpc.TtrpcError) as err:
        await asyncio.wait_for(call, 10)
    assert err.value.code == 14
    await client.close()


async def test_mux_frames_and_go_split() -> None:
    """Frames carry the connection id; a message over 4096 bytes goes out as exactly two frames
    (4096 bytes, then the rest); frames for an unopened id are dropped."""
    (ar, aw), (pr, pw) = await _pair()
    trunk = mux.Mux(ar, aw)
    runtime_conn = trunk.open(mux.RUNTIME_SERVICE_CONN)
    trunk.start()
    # Peer -> us: a frame for id 5 (unopened, dropped), then REGISTER_MESSAGE split across two frames of id 2.
    pw.write(bytes.fromhex("00000005" "00000003") + b"abc")
    pw.write(bytes.fromhex("00000002" "00000004") + REGISTER_MESSAGE[:4])
    pw.write(struct.pack(">II", 2, len(REGISTER_MESSAGE) - 4) + REGISTER_MESSAGE[4:])
    got = b""
    while len(got) < len(REGISTER_MESSAGE):
        got += await asyncio.wait_for(runtime_conn.read(), 10)
    assert got == REGISTER_MESSAGE
    # Us -> peer: small message = one frame; 5000-byte message = 4096 + 904.
    await runtime_conn.write_message(b"hello")
    assert await _read_exactly(pr, 13) == bytes.fromhex("00000002" "00000005") + b"hello"
    await runtime_conn.write_message(b"y" * 5000)
    assert await _read_exactly(pr, 8) == bytes.fromhex("00000002" "00001000")
    await _read_exactly(pr, 4096)
    assert await _read_exactly(pr, 8) == bytes.fromhex("00000002" "00000388")
    await _read_exactly(pr, 904)
    # Closing the trunk from the peer ends every logical connection.
    pw.close()
    assert await asyncio.wait_for(runtime_conn.read(), 10) == b""
    await trunk.close()


async def test_ttrpc_both_directions_over_mux() -> None:
    """Our client on id 1 and server on id 2 of one trunk, against our own peer on the other end
    (the same shape a plugin has): calls cross in both directions at once."""
    (ar, aw), (br, bw) = await _pair()
    runtime, plugin = mux.Mux(ar, aw), mux.Mux(br, bw)
    configured: list[str] = []

    async def configure(req: object) -> api_pb2.ConfigureResponse:
        assert isinstance(req, api_pb2.ConfigureRequest)
        configured.append(req.runtime_name)
        return api_pb2.ConfigureResponse(events=1 << 3)

    async def register(req: object) -> api_pb2.Empty:
        return api_pb2.Empty()

    r_client = ttrpc.Client(runtime.open(mux.PLUGIN_SERVICE_CONN))
    r_server = ttrpc.Server(runtime.open(mux.RUNTIME_SERVICE_CONN),
                            {RUNTIME: {"RegisterPlugin": ttrpc.Method(api_pb2.RegisterPluginRequest, register)}})
    p_server = ttrpc.Server(plugin.open(mux.PLUGIN_SERVICE_CONN),
                            {PLUGIN: {"Configure": ttrpc.Method(api_pb2.ConfigureRequest, configure)}})
    p_client = ttrpc.Client(plugin.open(mux.RUNTIME_SERVICE_CONN))
    for part in (runtime, plugin, r_client, r_server, p_server, p_client):
        part.start()
    big = "z" * 10000  # crosses the 4096-byte split
    _, conf = await asyncio.wait_for(asyncio.gather(
        p_client.call(RUNTIME, "RegisterPlugin", api_pb2.RegisterPluginRequest(plugin_name="p", plugin_idx="01"),
                      api_pb2.Empty, timeout=5),
        r_client.call(PLUGIN, "Configure", api_pb2.ConfigureRequest(runtime_name=big), api_pb2.ConfigureResponse,
                      timeout=5)), 20)
    assert conf.events == 8 and configured == [big]
    for part in (r_client, p_client):
        await part.close()
    for srv in (r_server, p_server):
        await srv.close()
    await runtime.close()
    await plugin.close()
