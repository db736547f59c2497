"""Migration files uploaded with a request: ``branchdb up`` in remote mode.

The CLI sends the branch's migrations directory as it sees it on disk (uncommitted
files included), so the daemon applies exactly what embedded mode would. Two body
formats are accepted:

- ``application/gzip``: a tar.gz of the directory's regular files (what the CLI sends);
- ``application/json``: ``{"files": {"relative/path.sql": "text", ...}}``.

An empty body means "no upload": the daemon reads the project's own directory. Limits
are enforced before anything is unpacked in full: the body (:data:`MAX_BODY`), the
unpacked size (:data:`MAX_UNPACKED`, so a gzip bomb stops early) and the number of
files (:data:`MAX_FILES`) — over any of them is 413. A tar's members are checked from
their headers before any is extracted: each declared size and their sum must fit in
:data:`MAX_UNPACKED` (413), and a sparse member (GNU type ``S``, or PAX sparse), which
can declare gigabytes of holes in a few bytes, is refused (400). A path that is
absolute, has a ``..`` or empty part, a backslash or a NUL is refused with 400
(nothing is written to disk: files stay in memory). Dot files are skipped, as the
engine's directory listing skips them, so an upload and the same directory on disk
have the same fingerprint. Unpacking and parsing run in the thread pool, never on
the event loop.
"""

from __future__ import annotations

import io
import json
import tarfile
import zlib
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from branchdb.daemon.api.deps import BadRequest, PayloadTooLarge

MAX_BODY = 8 * 1024 * 1024
MAX_UNPACKED = 32 * 1024 * 1024
MAX_FILES = 5000
MAX_PATH = 1024

GZIP_TYPES = ("application/gzip", "application/x-gzip", "application/x-tar+gzip")

#: The OpenAPI ``requestBody`` of routes that accept an upload.
SAFE_PATH_PATTERN = r"^(?!\.{1,2}(/|$))(?!.*/\.{1,2}(/|$))[^/\\\x00]+(/[^/\\\x00]+)*$"

OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "description": "Optional: the migrations to apply instead of the project's "
        "own directory (a tar.gz, or JSON {files: {path: content}}); at most "
        f"{MAX_BODY} bytes, {MAX_UNPACKED} unpacked, {MAX_FILES} files.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                            # What check_path accepts: relative, no ".", ".." or
                            # empty segment, no backslash or NUL.
                            "propertyNames": {
                                "pattern": SAFE_PATH_PATTERN,
                                "maxLength": MAX_PATH,
                            },
                        }
                    },
                    "required": ["files"],
                }
            },
            "application/gzip": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class UploadedFiles:
    """Uploaded migration files, in memory (a MigrationFiles)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self._files = files

    def __str__(self) -> str:
        return "the uploaded migrations"

    def paths(self) -> list[str]:
        return sorted(self._files)

    def read(self, path: str) -> bytes:
        try:
            return self._files[path]
        except KeyError:
            raise FileNotFoundError(f"{path} is not in {self}") from None


def check_path(path: str) -> str | None:
    """*path* if it is a safe relative POSIX path; None for a dot file (skipped).

    Raises BadRequest for anything that could leave the migrations directory.
    """
    parts = path.split("/")
    if (
        not path
        or len(path) > MAX_PATH
        or path.startswith("/")
        or "\\" in path
        or "\0" in path
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise BadRequest(f"unsafe path in upload: {path[:100]!r}")
    if any(p.startswith(".") for p in parts):
        return None
    return path


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, refused with 413 past *limit* bytes (before reading it all)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_upload(request: Request) -> UploadedFiles | None:
    """The files uploaded with *request*, or None if its body is empty."""
    body = await read_body(request)
    if not body:
        return None
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in GZIP_TYPES:
        return UploadedFiles(await run_in_threadpool(_from_targz, body))
    if kind == "application/json":
        return UploadedFiles(await run_in_threadpool(_from_json, body))
    raise BadRequest(
        f"unsupported content type {kind or '(none)'!r} for an upload: send "
        "application/gzip (tar.gz) or application/json"
    )


def _add(files: dict[str, bytes], path: str, data: bytes, total: int) -> int:
    if len(files) >= MAX_FILES:
        raise PayloadTooLarge(f"upload holds more than {MAX_FILES} files")
    total += len(data)
    if total > MAX_UNPACKED:
        raise PayloadTooLarge(f"upload unpacks to more than {MAX_UNPACKED} bytes")
    kept = check_path(path)
    if kept is not None:
        if kept in files:
            raise BadRequest(f"path {kept!r} appears twice in the upload")
        files[kept] = data
    return total


def parse_json(body: bytes, what: str) -> Any:
    """*body* parsed as JSON; BadRequest naming *what* if it is not JSON.

    Nesting deeper than the interpreter's recursion limit (``[[[[…]]]]`` 50,000
    deep fits in a few hundred kB) is a malformed request too, not a crash.
    """
    try:
        return json.loads(body)
    except RecursionError:
        raise BadRequest(f"{what} is nested too deeply to read") from None
    except ValueError:  # UnicodeDecodeError included
        raise BadRequest(f"{what} is not valid JSON") from None


def _from_json(body: bytes) -> dict[str, bytes]:
    data = parse_json(body, "the upload")
    raw = data.get("files") if isinstance(data, dict) else None
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise BadRequest('a JSON upload is {"files": {"path": "content", ...}}')
    files: dict[str, bytes] = {}
    total = 0
    for path, text in raw.items():
        total = _add(files, path, text.encode("utf-8", "surrogatepass"), total)
    return files


def _from_targz(body: bytes) -> dict[str, bytes]:
    # Decompress with a cap first: tarfile would happily inflate a bomb.
    inflater = zlib.decompressobj(wbits=31)
    try:
        raw = inflater.decompress(body, MAX_UNPACKED + 1024 * 1024)
    except zlib.error:
        raise BadRequest("the upload is not a valid tar.gz") from None
    if inflater.unconsumed_tail:
        raise PayloadTooLarge(f"upload unpacks to more than {MAX_UNPACKED} bytes")
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            members = _checked_members(tar)
            for member in members:
                if member.isdir():
                    continue  # implied by the files' paths; nothing is written
                f = tar.extractfile(member)
                data = f.read() if f is not None else b""
                # `tar -C dir .` writes ./name: the same file as name.
                name = member.name[2:] if member.name.startswith("./") else member.name
                total = _add(files, name, data, total)
    except tarfile.TarError:
        raise BadRequest("the upload is not a valid tar.gz") from None
    return files


def _checked_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every member of *tar*, read from the headers alone, once each is known safe
    to extract: a directory or a plain regular file, not sparse, declared sizes
    within :data:`MAX_UNPACKED` (each and in sum), at most :data:`MAX_FILES`."""
    members: list[tarfile.TarInfo] = []
    declared = 0
    for member in tar:  # reads each header and skips its data: nothing is unpacked
        if len(members) >= MAX_FILES:
            raise PayloadTooLarge(f"upload holds more than {MAX_FILES} entries")
        name = member.name[:100]
        if member.issparse():  # isreg() is True for these: check first
            raise BadRequest(
                f"upload member {name!r} is a sparse file; send regular files"
            )
        if not (member.isreg() or member.isdir()):
            raise BadRequest(f"upload member {name!r} is not a regular file")
        declared += member.size
        if member.size > MAX_UNPACKED or declared > MAX_UNPACKED:
            raise PayloadTooLarge(
                f"upload declares more than {MAX_UNPACKED} bytes unpacked "
                f"({name!r} declares {member.size})"
            )
        members.append(member)
    return members
