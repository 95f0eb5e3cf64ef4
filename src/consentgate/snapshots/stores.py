"""Where inputs and snapshots live: a local folder, or a URI of a filesystem that pyarrow.fs
supports (``s3://bucket/prefix``, ``hdfs://host:port/path``), through one abstraction.

S3 is configured as every S3 client is: ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (an
S3-compatible store: ``http://127.0.0.1:9000``), ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``); without keys, the AWS SDK's own
chain (profile, instance role). ``CONSENTGATE_STORE_TIMEOUT`` (seconds, default 30) bounds each
request, ``CONSENTGATE_STORE_ATTEMPTS`` (default 3) the tries of a failing one.

An object store has no atomic rename, so a snapshot is published there by the protocol in
``docs/snapshots.md`` ("Publication on an object store"): upload under a prefix of its own, the
manifest last; the registry commit is the point of publication, and the ``_PUBLISHED`` marker
written after it is what every reader looks for (a prefix without it is ignored).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from consentgate.exceptions import ConsentgateError, InputError, one_line

PUBLISHED = "_PUBLISHED"
"""The marker that makes a prefix on an object store a published snapshot (written after the
registry commit; readers ignore a prefix without it)."""
SCHEMES = ("s3", "s3a", "hdfs", "file")
CHUNK = 8 << 20
_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


class StoreError(ConsentgateError):
    """The object store refused or did not answer (credentials, a 5xx, a timeout, no bucket)."""

    status_code = 502


class NotPublished(ConsentgateError):
    """A registered snapshot's prefix on an object store has no ``_PUBLISHED`` marker (yet)."""

    status_code = 409


@dataclass(frozen=True)
class Location:
    """A folder or file on a filesystem: ``fs`` and its ``path``; ``uri`` is how users and the
    registry name it (a local path stays a plain absolute path)."""

    fs: pafs.FileSystem
    path: str
    uri: str

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def child(self, *parts: str) -> Location:
        tail = "/".join(p.strip("/") for p in parts)
        return Location(self.fs, f"{self.path.rstrip('/')}/{tail}", f"{self.uri.rstrip('/')}/{tail}")

    def local_path(self) -> Path:
        if not self.local:
            raise ValueError(f"{self.uri} is not a local path")
        return Path(self.path)

    @property
    def namespace(self) -> str:
        """OpenLineage's dataset namespace for this storage: ``s3://bucket``, ``hdfs://host:port``."""
        parts = urlsplit(self.uri)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def key(self) -> str:
        """The path inside the namespace (``prefix/file`` for s3, ``/path`` for hdfs)."""
        parts = urlsplit(self.uri)
        return parts.path.lstrip("/") if parts.scheme in ("s3", "s3a") else parts.path


def local(path: Path) -> Location:
    """A local folder or file as a Location."""
    absolute = str(path.absolute())
    return Location(pafs.LocalFileSystem(), absolute, absolute)


def is_uri(text: str | Path) -> bool:
    return isinstance(text, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) is not None


def parse(text: str, option: str) -> Location:
    """``text`` (a path or a URI) as a Location; an unsupported or malformed URI is named."""
    if not is_uri(text):
        return local(Path(text))
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InputError(
            f"{option}: {text}: expected a local path or a URI of {', '.join(s + '://' for s in SCHEMES)}"
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InputError(f"{option}: {text}: a file:// URI names this host (file:///path)")
        return parse(parts.path or "/", option)
    if not parts.netloc:
        raise InputError(f"{option}: {text}: expected {scheme}://BUCKET-OR-HOST/path")
    if parts.query or parts.fragment:
        raise InputError(f"{option}: {text}: a storage URI takes no ?query or #fragment")
    path = parts.path.rstrip("/")
    if scheme in ("s3", "s3a"):
        return Location(s3_filesystem(), f"{parts.netloc}{path}", f"s3://{parts.netloc}{path}")
    fs = hdfs_filesystem(parts.hostname or "", parts.port or 8020, option)
    return Location(fs, path or "/", text.rstrip("/"))


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise InputError(f"{name}: expected a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise InputError(f"{name}: expected a number of seconds above 0, got {raw!r}")
    return value


def s3_filesystem() -> pafs.S3FileSystem:
    """An S3 client configured by the standard AWS variables (endpoint override included)."""
    options: dict[str, Any] = {
        "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        "connect_timeout": _seconds("CONSENTGATE_STORE_TIMEOUT", 30.0),
        "request_timeout": _seconds("CONSENTGATE_STORE_TIMEOUT", 30.0),
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(
            max_attempts=int(_seconds("CONSENTGATE_STORE_ATTEMPTS", 3))
        ),
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else "https://" + endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InputError(f"AWS_ENDPOINT_URL: expected http(s)://HOST[:PORT], got {endpoint!r}")
        options.update(endpoint_override=parts.netloc, scheme=parts.scheme)
        # an S3-compatible store at an address is addressed by path (bucket in the path), as boto3 does
        options["force_virtual_addressing"] = False
    present = [k for k in _KEYS if os.environ.get(k)]
    if len(present) == 1:
        missing = next(k for k in _KEYS if k not in present)
        raise InputError(f"{present[0]} is set but {missing} is not: set both, or neither")
    if present:
        options.update(
            access_key=os.environ["AWS_ACCESS_KEY_ID"],
            secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
        )
    return pafs.S3FileSystem(**options)


def hdfs_filesystem(host: str, port: int, option: str = "hdfs") -> pafs.FileSystem:
    try:
        return pafs.HadoopFileSystem(host, port)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(
            f"{option}: hdfs://{host}:{port}: cannot connect ({one_line(exc, 160)}); pyarrow's HDFS"
            " client needs libhdfs (HADOOP_HOME, JAVA_HOME and the Hadoop CLASSPATH) on this machine"
        ) from None


_REASONS = (
    (("invalidaccesskeyid", "signaturedoesnotmatch", "accessdenied", "access_denied", "access denied",
      "http status 403", "http response code: 403", "forbidden"),
     "the store refused access (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's policy)"),
    (("nosuchbucket", "bucket does not exist"), "the bucket does not exist"),
    (("curlcode: 28", "timeout was reached", "timed out"), "the store did not answer in time"),
    (("curlcode: 7", "couldn't connect", "could not connect", "connection refused", "could not resolve"),
     "the store cannot be reached"),
    (("http response code: 5", "http status 5", "internal_failure", "internalerror",
      "service_unavailable", "slowdown"),
     "the store failed (a 5xx answer)"),
)  # fmt: skip
_QUOTED = re.compile(r"'[^']*'")
"""Bucket names and keys as the SDK quotes them: never read as a reason ("…-4031…" is not a 403)."""


def store_error(exc: BaseException, where: Location | str, doing: str) -> StoreError:
    """One line for a failed store operation: what was done, where, and why in words."""
    uri = where.uri if isinstance(where, Location) else where
    text = _QUOTED.sub("''", str(exc).replace(uri, "")).lower()
    reason = next((why for needles, why in _REASONS if any(n in text for n in needles)), None)
    detail = one_line(exc, 200)
    said = f"{reason} ({detail})" if reason else detail
    return StoreError(f"cannot {doing} {uri}: {said}")


@contextmanager
def _guard(where: Location, doing: str) -> Iterator[None]:
    """``with _guard(loc, "read"):`` turns a store's OSError into a StoreError naming ``loc``."""
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        if where.local:
            raise
        raise store_error(exc, where, doing) from exc


def kind_of(where: Location) -> pafs.FileType:
    with _guard(where, "read"):
        return where.fs.get_file_info(where.path).type


def exists(where: Location) -> bool:
    return bool(kind_of(where) != pafs.FileType.NotFound)


def is_file(where: Location) -> bool:
    return bool(kind_of(where) == pafs.FileType.File)


def files(where: Location, *, recursive: bool = False) -> list[Location]:
    """The files under ``where`` (sorted by path); none if it does not exist."""
    with _guard(where, "list"):
        infos = where.fs.get_file_info(
            pafs.FileSelector(where.path, allow_not_found=True, recursive=recursive)
        )
    base = where.path.rstrip("/") + "/"
    return [
        where.child(info.path[len(base) :])
        for info in sorted(infos, key=lambda i: i.path)
        if info.type == pafs.FileType.File and info.path.startswith(base)
    ]


def folders(where: Location) -> list[Location]:
    """The folders (common prefixes) directly under ``where``."""
    with _guard(where, "list"):
        infos = where.fs.get_file_info(pafs.FileSelector(where.path, allow_not_found=True))
    base = where.path.rstrip("/") + "/"
    return [
        where.child(info.path[len(base) :])
        for info in sorted(infos, key=lambda i: i.path)
        if info.type == pafs.FileType.Directory and info.path.startswith(base)
    ]


def read_bytes(where: Location) -> bytes:
    with _guard(where, "read"), where.fs.open_input_stream(where.path) as handle:
        return bytes(handle.read())


def write_bytes(where: Location, data: bytes) -> None:
    with _guard(where, "write"), where.fs.open_output_stream(where.path) as handle:
        handle.write(data)


def delete_folder(where: Location) -> None:
    with _guard(where, "delete"):
        where.fs.delete_dir(where.path)


def download(source: Location, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with _guard(source, "read"), source.fs.open_input_stream(source.path) as handle, target.open("wb") as out:
        while block := handle.read(CHUNK):
            out.write(block)


def upload(source: Path, target: Location) -> None:
    with (
        _guard(target, "write"),
        source.open("rb") as handle,
        target.fs.open_output_stream(target.path) as out,
    ):
        while block := handle.read(CHUNK):
            out.write(block)


def upload_tree(folder: Path, target: Location, *, last: str) -> list[str]:
    """Upload every file of ``folder`` under ``target``, ``last`` (the manifest) after all others."""
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    ordered = [n for n in names if n != last] + [n for n in names if n == last]
    for name in ordered:
        upload(folder / name, target.child(name))
    return ordered


def download_tree(source: Location, folder: Path, *, skip: Iterable[str] = ()) -> list[str]:
    """Every file under ``source`` into ``folder`` (created); returns the relative names."""
    skipped = set(skip)
    folder.mkdir(parents=True, exist_ok=True)
    base = source.path.rstrip("/") + "/"
    names: list[str] = []
    for item in files(source, recursive=True):
        name = item.path[len(base) :]
        if name in skipped:
            continue
        download(item, folder / name)
        names.append(name)
    return names


def check_writable(where: Location) -> None:
    """Write and delete a probe object under ``where``: a read-only store is refused before any work."""
    probe = where.child(f".consentgate-probe-{uuid.uuid4().hex}")
    write_bytes(probe, b"")
    with _guard(probe, "delete"):
        where.fs.delete_file(probe.path)


def marker(snapshot_id: str, manifest_sha256: str) -> bytes:
    return (
        json.dumps({"snapshot_id": snapshot_id, "manifest_sha256": manifest_sha256}, sort_keys=True) + "\n"
    ).encode()


def argument(text: str) -> Path | str:
    """A ``--data`` / ``--out`` value as given on the command line: a URI stays text, a path is a Path."""
    return text if is_uri(text) else Path(text)


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "consentgate"


def parent(uri: str) -> str:
    """The prefix a snapshot's prefix is in (``s3://b/snaps/<id>.<lease>`` → ``s3://b/snaps``)."""
    return uri.rstrip("/").rsplit("/", 1)[0]


def staging_for(uri: str) -> Path:
    """This host's local folder for builds into the store prefix ``uri``: their unpublished folders
    and, without an OpenLineage endpoint, the ``openlineage.jsonl`` of builds and reads there."""
    folder = cache_root() / "staging" / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def replace_folder(staged: Path, final: Path) -> None:
    """Put ``staged`` at ``final`` (what was there goes)."""
    if final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staged.rename(final)
