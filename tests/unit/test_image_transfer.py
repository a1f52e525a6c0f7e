"""Pure parts of the Transfer pull: error classes from containerd's text, version parsing, progress
folding and the Any packing containerd's typeurl registry expects."""

from __future__ import annotations

import pytest

from criproxy import errors
from criproxy.images import content, reference, transfer
from criproxy.protos import transfer_progress, transfer_registry

REF = reference.parse("127.0.0.1:5000/app:v1")


@pytest.mark.parametrize(("text", "cls"), [
    ("failed to resolve image: failed to do request: Head \"https://127.0.0.1:1/v2/a/manifests/v1\": "
     "dial tcp 127.0.0.1:1: connect: connection refused", errors.Unavailable),
    ("pull access denied, repository does not exist or may require authorization: authorization failed: "
     "no basic auth credentials", errors.Unauthenticated),
    ("failed to authorize: failed to fetch oauth token: unexpected status from GET request to "
     "http://127.0.0.1:2/token: 401 Unauthorized", errors.Unauthenticated),
    ("unexpected status from GET request: 403 Forbidden", errors.PermissionDenied),
    ("unmarshal image config: invalid character '\\x1f' looking for beginning of value", errors.FailedPrecondition),
    ("tls: failed to verify certificate: x509: certificate signed by unknown authority", errors.Unavailable),
    ("unexpected status from HEAD request: 503 Service Unavailable", errors.Unavailable),
    ("something nobody foresaw", errors.Unavailable),
])
def test_unknown_errors_get_the_own_clients_classes(text: str, cls: type[errors.CriError]) -> None:
    got = transfer.classify(errors.Unknown(f"containerd Transfer.Transfer: {text}"), REF)
    assert type(got) is cls
    assert str(REF) in str(got) and text in str(got)


def test_classified_codes_pass_through() -> None:
    err = errors.NotFound("containerd Transfer.Transfer: failed to resolve image: x: not found")
    assert transfer.classify(err, REF) is err


def test_token_service_and_missing_credentials_read_differently() -> None:
    token = transfer.classify(errors.Unknown("failed to fetch oauth token: 401 Unauthorized"), REF)
    basic = transfer.classify(errors.Unknown("authorization failed: no basic auth credentials"), REF)
    assert "token service" in str(token) and "requires credentials" in str(basic)


@pytest.mark.parametrize(("version", "major"), [("2.1.9+unknown", 2), ("v1.6.20~ds1", 1), ("1.7.24", 1),
                                                 ("", 0), ("dev", 0)])
def test_major_version(version: str, major: int) -> None:
    assert transfer.major_version(version) == major


def _ev(event: str, name: str, done: int, total: int) -> transfer_progress.Progress:
    return transfer_progress.Progress(event=event, name=name, progress=done, total=total)


def test_progress_events_fold_into_bytes_and_open_blobs() -> None:
    prog = content.Progress()
    jobs = transfer._Jobs(prog)
    jobs.event(_ev("waiting", "layer-a", 0, 100))
    jobs.event(_ev("waiting", "layer-b", 0, 50))
    assert (prog.total, prog.bytes, prog.active) == (150, 0, 2)
    jobs.event(_ev("downloading", "layer-a", 40, 100))
    jobs.event(_ev("downloading", "layer-a", 90, 100))
    assert prog.bytes == 90
    jobs.event(_ev("complete", "layer-a", 100, 100))
    jobs.event(_ev("already exists", "layer-b", 50, 50))      # present already: no bytes moved
    assert (prog.bytes, prog.active) == (100, 0)
    assert prog.stalled_for() == 0.0                          # nothing open: unpacking is not a stall


def test_progress_tracks_a_bounded_number_of_blobs() -> None:
    prog = content.Progress()
    jobs = transfer._Jobs(prog)
    for i in range(transfer.MAX_PROGRESS_JOBS + 10):
        jobs.event(_ev("waiting", f"blob-{i}", 0, 1))
    assert len(jobs.done) == transfer.MAX_PROGRESS_JOBS


def test_any_type_url_is_the_bare_full_name() -> None:
    packed = transfer._pack(transfer_registry.OCIRegistry(reference="x"))
    assert packed.type_url == "containerd.types.transfer.OCIRegistry"


def test_registry_token_is_left_to_the_own_client() -> None:
    from criproxy.images.auth import Credentials
    assert not transfer.supports(Credentials(registry_token="t"))
    assert transfer.supports(Credentials(username="u", password="p"))
