"""Uploads that declare more than they carry: a sparse tar member declaring 2 GiB in
an 82-byte upload, a member whose header declares more than the limit, members that
declare more in sum. Each is refused from its headers, before anything is unpacked:
nothing large is allocated or written."""

from __future__ import annotations

import gzip
import io
import tarfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from apisupport import auth, make_tokens, serve_in_thread, settings_for, setup_project

from branchdb.daemon.api import uploads
from branchdb.daemon.api.app import create_app
from branchdb.daemon.api.deps import BadRequest, PayloadTooLarge

GIB = 1024**3
#: Far below anything a declared size could make the daemon allocate.
SMALL = 4 * 1024 * 1024
T = TypeVar("T")


def _header(name: str, kind: bytes, size: int, declared: int | None = None) -> bytes:
    """One GNU tar header for *name*; a sparse one (type ``S``) declares *declared*
    bytes (its real size) while *size* bytes follow it in the archive."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    buf = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    if declared is not None:
        buf[483:495] = b"%011o\0" % declared  # the GNU sparse header's realsize
        buf[148:156] = b" " * 8
        buf[148:156] = b"%06o\0 " % sum(buf[:512])
    return bytes(buf)


def sparse_upload(declared: int) -> bytes:
    """A tar.gz holding one sparse member of *declared* bytes, all holes."""
    raw = _header("001_big.sql", tarfile.GNUTYPE_SPARSE, 0, declared) + b"\0" * 1024
    return gzip.compress(raw, mtime=0)


def lying_upload(declared: int) -> bytes:
    """A tar.gz whose one regular member declares *declared* bytes and holds 3."""
    raw = _header("001_big.sql", tarfile.REGTYPE, declared) + b"abc"
    return gzip.compress(raw, mtime=0)


def peak_of(fn: Callable[[], T]) -> tuple[T | BaseException, int]:
    """(*fn*'s result or exception, peak bytes traced while it ran)."""
    tracemalloc.start()
    try:
        try:
            out: T | BaseException = fn()
        except Exception as e:
            out = e
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_sparse_upload_is_tiny() -> None:
    body = sparse_upload(2 * GIB)
    assert len(body) < 100
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(body))) as tar:
        (member,) = tar.getmembers()
        assert member.issparse() and member.size == 2 * GIB


@pytest.mark.parametrize("declared", [40 * 1024 * 1024, 2 * GIB])
def test_a_sparse_member_is_refused_without_unpacking(declared: int) -> None:
    err, peak = peak_of(lambda: uploads._from_targz(sparse_upload(declared)))
    assert isinstance(err, BadRequest) and "sparse" in str(err), err
    assert peak < SMALL, peak


@pytest.mark.parametrize("declared", [uploads.MAX_UNPACKED + 1, 2 * GIB])
def test_a_member_declaring_too_much_is_refused_from_its_header(declared: int) -> None:
    err, peak = peak_of(lambda: uploads._from_targz(lying_upload(declared)))
    assert isinstance(err, PayloadTooLarge) and "declares" in str(err), err
    assert peak < SMALL, peak


def test_members_declaring_too_much_in_sum_are_refused_before_extracting() -> None:
    half = uploads.MAX_UNPACKED // 2 + 1
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("001_a.sql", "002_b.sql"):
            info = tarfile.TarInfo(name)
            info.size = half
            tar.addfile(info, io.BytesIO(b"\0" * half))
    read: list[str] = []
    real = tarfile.TarFile.extractfile

    def spy(self: tarfile.TarFile, member: str | tarfile.TarInfo) -> object:
        read.append(str(member))
        return real(self, member)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tarfile.TarFile, "extractfile", spy)
        with pytest.raises(PayloadTooLarge, match="declares"):
            uploads._from_targz(buf.getvalue())
    assert read == []  # refused before the first member was extracted


# ------------------------------------------------------------------ over HTTP
@pytest.fixture
def served(repo: Path) -> Iterator[tuple[httpx.Client, dict[str, str], Path]]:
    setup_project(repo)
    settings = settings_for(repo)
    toks = make_tokens(settings)
    with (
        serve_in_thread(create_app(settings)) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        yield client, toks, repo / ".branchdb"


def _size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("body", "status"),
    [(sparse_upload(2 * GIB), 400), (lying_upload(2 * GIB), 413)],
    ids=["sparse", "declared"],
)
def test_a_read_token_cannot_make_the_daemon_unpack_gigabytes(
    served: tuple[httpx.Client, dict[str, str], Path], body: bytes, status: int
) -> None:
    client, toks, data = served
    path = "/v1/projects/shop/branches/main"
    assert client.put(path, headers=auth(toks["ci"])).status_code == 201
    before = _size_of(data)
    headers = {**auth(toks["read"]), "Content-Type": "application/gzip"}
    r, peak = peak_of(
        lambda: client.post(f"{path}/status", content=body, headers=headers)
    )
    assert isinstance(r, httpx.Response)
    assert r.status_code == status, r.text
    assert r.json()["error"]["type"] in ("BadRequest", "PayloadTooLarge")
    assert peak < SMALL, peak  # the daemon runs in this process: its threads count
    assert _size_of(data) < before + SMALL
    # The same upload on a write route changes nothing either.
    r = client.put(
        "/v1/projects/shop/branches/feature/x",
        content=body,
        headers={**auth(toks["ci"]), "Content-Type": "application/gzip"},
    )
    assert r.status_code == status, r.text
    names = [
        b["branch"]
        for b in client.get(
            "/v1/projects/shop/branches", headers=auth(toks["read"])
        ).json()
    ]
    assert names == ["main"]
