"""A member's data archive: one ZIP, several ZIPs of one export, or an unpacked folder.

Every entry is checked before anything is read: names must stay inside the archive (no ``..``, no
absolute paths), no entry may be encrypted, and a ZIP bomb is refused (``MAX_RATIO``,
``MAX_TOTAL_BYTES``, ``MAX_ENTRIES``). Entries are read as streams, never unpacked to disk; a reader
never gets more bytes than the entry declares.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from consentgate.exceptions import InputError

MAX_RATIO = 200
"""Refuse an entry that expands more than 200-fold (CSV exports compress 5- to 20-fold)."""
RATIO_FLOOR = 1 << 20
"""Entries up to 1 MiB uncompressed are not held to the ratio (tiny files compress oddly)."""
MAX_TOTAL_BYTES = 32 << 30
"""Refuse an archive that expands to more than 32 GiB in all."""
MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class ArchiveFile:
    """One file of the archive: its path as inside the archive and how to stream it."""

    path: str
    source: Path
    size: int
    """Uncompressed bytes (as declared by the ZIP, or the file's size in a folder)."""

    def open(self) -> BinaryIO:
        if self.source.is_dir():
            return (self.source / self.path).open("rb")
        archive = zipfile.ZipFile(self.source)
        try:
            raw = archive.open(self.path)
        except Exception:
            archive.close()
            raise
        return io.BufferedReader(_Bounded(raw, self.size, archive, f"{self.source.name}:{self.path}"))


class _Bounded(io.RawIOBase):
    """A ZIP entry's stream that refuses to yield more bytes than the entry declared."""

    def __init__(self, raw: IO[bytes], limit: int, archive: zipfile.ZipFile, label: str) -> None:
        self.raw, self.left, self.archive, self.label = raw, limit, archive, label

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self.raw.read(len(buffer))
        if len(data) > self.left:
            raise InputError(f"{self.label}: holds more bytes than the ZIP declares; refused (a ZIP bomb?)")
        self.left -= len(data)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self.raw.close()
            self.archive.close()
        finally:
            super().close()


@dataclass(frozen=True)
class Archive:
    sources: tuple[Path, ...]
    files: tuple[ArchiveFile, ...]


def _safe_name(name: str, source: Path) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise InputError(
            f"{source}: entry {name!r} points outside the archive (absolute path or '..'); refused"
        )
    return path.as_posix()


def _zip_files(source: Path) -> list[ArchiveFile]:
    try:
        archive = zipfile.ZipFile(source)
    except zipfile.BadZipFile:
        raise InputError(f"{source}: not a ZIP file (expected the data archive the operator sends)") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot be read ({exc.strerror or exc})") from None
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(infos) > MAX_ENTRIES:
            raise InputError(f"{source}: {len(infos):,} entries, more than {MAX_ENTRIES:,}; refused")
        total = 0
        out: list[ArchiveFile] = []
        for info in infos:
            if info.flag_bits & 0x1:
                raise InputError(
                    f"{source}: entry {info.filename!r} is encrypted; unpack it with its password first"
                )
            name = _safe_name(info.filename, source)
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > RATIO_FLOOR and ratio > MAX_RATIO:
                raise InputError(
                    f"{source}: entry {info.filename!r} expands {ratio:,.0f}-fold"
                    f" (more than {MAX_RATIO}-fold); refused as a possible ZIP bomb"
                )
            total += info.file_size
            if total > MAX_TOTAL_BYTES:
                raise InputError(
                    f"{source}: expands to more than {MAX_TOTAL_BYTES >> 30} GiB;"
                    " refused as a possible ZIP bomb"
                )
            out.append(ArchiveFile(name, source, info.file_size))
    return out


def _folder_files(source: Path) -> list[ArchiveFile]:
    out: list[ArchiveFile] = []
    for path in sorted(source.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out.append(ArchiveFile(path.relative_to(source).as_posix(), source, path.stat().st_size))
        if len(out) > MAX_ENTRIES:
            raise InputError(f"{source}: more than {MAX_ENTRIES:,} files; refused")
    return out


def open_archive(paths: Sequence[Path]) -> Archive:
    """The files of one export, given as ZIPs (one or several parts) or an unpacked folder."""
    if not paths:
        raise InputError("ARCHIVE: give the data archive (a ZIP, its parts, or the unpacked folder)")
    files: list[ArchiveFile] = []
    seen: dict[str, Path] = {}
    for source in paths:
        if not source.exists():
            raise InputError(f"{source}: no such file or folder")
        found = _folder_files(source) if source.is_dir() else _zip_files(source)
        for item in found:
            if item.path in seen:
                raise InputError(
                    f"{item.path} is in both {seen[item.path]} and {source}: give the parts of one export"
                )
            seen[item.path] = source
        files.extend(found)
    if not files:
        raise InputError(f"{', '.join(map(str, paths))}: the archive holds no files")
    return Archive(tuple(paths), tuple(files))
