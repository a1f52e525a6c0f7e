"""The hand-encoded Content.Write WRITE message must parse as the real protobuf message."""

from __future__ import annotations

import pytest

from criproxy.images.content import encode_write
from criproxy.protos import content_pb


@pytest.mark.parametrize(("offset", "data"), [(0, b""), (0, b"abc"), (127, b"x"), (128, b"y" * 300),
                                              (5 * 1024**3, b"z" * 70000)])
def test_encode_write_round_trips(offset: int, data: bytes) -> None:
    msg = content_pb.WriteContentRequest.FromString(encode_write(offset, data))
    assert encode_write(offset, data[:3], data[3:]) == encode_write(offset, data)
    assert (msg.action, msg.offset, msg.data, msg.ref, msg.total) == (content_pb.WRITE, offset, data, "", 0)
