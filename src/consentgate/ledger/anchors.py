"""Anchors: the chain's (seq, hash) recorded outside the database, and signed checkpoints.

The hash chain alone shows that the events agree with each other; someone who can write to the
database can rewrite all of them and the head. An anchor is a (seq, hash) pair kept elsewhere: a
snapshot manifest's watermark, or a checkpoint signed with an Ed25519 key and published where the
database's owner cannot change it. ``Ledger.verify(anchors=...)`` compares the chain with them.

A checkpoint signs these UTF-8 bytes (``|`` cannot occur in any field)::

    consentgate.checkpoint/1|<seq>|<hash>|<at>|<key_id>

with ``seq`` in decimal, ``hash`` the chain hash at seq (64 lowercase hex), ``at`` the instant it
was taken (``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``) and ``key_id`` the first 16 hex digits of the
SHA-256 of the raw 32-byte public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consentgate.exceptions import CheckpointError, ConsentgateError, InputError, PublishError
from consentgate.ledger.events import GENESIS_HASH
from consentgate.timeutil import format_instant

FORMAT = "consentgate.checkpoint/1"
POST_TIMEOUT = 10.0  # seconds; a checkpoint is small, a slow answer means the receiver is in trouble

_HASH = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")


@dataclass(frozen=True)
class Anchor:
    """The chain hash at ``seq`` as recorded outside the database; ``label`` names where."""

    seq: int
    hash: str
    label: str


@dataclass(frozen=True)
class Unusable:
    """A would-be anchor that cannot be trusted (e.g. a manifest changed since registration)."""

    label: str
    reason: str


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: at instant ``at`` the ledger's chain hash at ``seq`` was ``hash``."""

    seq: int
    hash: str
    at: str
    key_id: str
    signature: str
    """Base64 of the Ed25519 signature over ``signed_bytes()``."""
    format: str = FORMAT

    def signed_bytes(self) -> bytes:
        return signed_bytes(self.seq, self.hash, self.at, self.key_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "seq": self.seq,
            "hash": self.hash,
            "at": self.at,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    def to_json(self) -> str:
        """One line of JSON, the form in a checkpoints file and in a POST body."""
        return json.dumps(self.to_dict())

    def verify(self, keys: dict[str, Ed25519PublicKey], *, where: str) -> None:
        """Refuse a checkpoint of an unknown key or with a signature that does not verify."""
        named = f"{where} (seq {self.seq}, key id {self.key_id})"
        key = keys.get(self.key_id)
        if key is None:
            known = ", ".join(sorted(keys)) or "none"
            raise CheckpointError(
                f"{named}: signed by an unknown key (public keys given: {known}); "
                "pass the key's public half with --public-key"
            )
        try:
            key.verify(base64.b64decode(self.signature), self.signed_bytes())
        except InvalidSignature:
            raise CheckpointError(
                f"{named}: bad signature: it does not verify with public key {self.key_id} "
                "(the checkpoint was altered, or not signed by that key)"
            ) from None


def signed_bytes(seq: int, digest: str, at: str, key_id: str) -> bytes:
    """The exact bytes a checkpoint's signature covers (documented in docs/ledger.md)."""
    return f"{FORMAT}|{seq}|{digest}|{at}|{key_id}".encode()


# -- keys ---------------------------------------------------------------------------------------


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def write_key_pair(out: Path) -> str:
    """Write a new private key to ``out`` (0600) and its public key to ``out.pub``; returns the key id."""
    public_path = out.with_name(out.name + ".pub")
    for path in (out, public_path):
        if path.exists():
            raise InputError(f"{path} exists: keygen never overwrites a key file; choose another --out")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _create(out, private_pem, private=True)
    try:
        _create(public_path, public_pem, private=False)
    except BaseException:
        out.unlink()
        raise
    return key_id_of(key.public_key())


def _create(path: Path, data: bytes, *, private: bool) -> None:
    # O_EXCL: a key file that appeared since the check above is not overwritten either.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    except FileExistsError:
        raise InputError(f"{path} exists: keygen never overwrites a key file; choose another --out") from None
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as file:
        if private:
            os.fchmod(fd, 0o600)  # exactly owner-only, whatever the umask
        file.write(data)
        file.flush()
        os.fsync(fd)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(
            f"{path}: not an unencrypted PEM private key ({exc}); use a key written by `audit keygen`"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"{path}: not an Ed25519 private key; use a key written by `audit keygen`")
    return key


def load_public_keys(paths: Iterable[Path]) -> dict[str, Ed25519PublicKey]:
    """Public keys by key id, from PEM (SubjectPublicKeyInfo) files such as ``keygen``'s ``.pub``."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        data = _read_key_file(path)
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise CheckpointError(
                f"{path}: not a PEM public key ({exc}); use the .pub file written by `audit keygen`"
            ) from None
        if not isinstance(key, Ed25519PublicKey):
            raise CheckpointError(f"{path}: not an Ed25519 public key")
        keys[key_id_of(key)] = key
    return keys


def _read_key_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the key file ({exc.strerror or exc})") from None


# -- checkpoints --------------------------------------------------------------------------------


def sign_checkpoint(key: Ed25519PrivateKey, *, seq: int, digest: str, at: datetime) -> Checkpoint:
    """The checkpoint of chain hash ``digest`` at ``seq``, taken at ``at``, signed with ``key``."""
    key_id = key_id_of(key.public_key())
    instant = format_instant(at)
    signature = key.sign(signed_bytes(seq, digest, instant, key_id))
    return Checkpoint(seq, digest, instant, key_id, base64.b64encode(signature).decode("ascii"))


def parse_checkpoint(data: Any, *, where: str) -> Checkpoint:
    """A checkpoint from its JSON object; every field checked, so the signed bytes are unambiguous."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: expected a JSON object, got {type(data).__name__}")

    def field(name: str, check: re.Pattern[str] | None, expected: str) -> str:
        value = data.get(name)
        if not isinstance(value, str) or (check is not None and not check.fullmatch(value)):
            got = "nothing" if name not in data else repr(value)
            raise CheckpointError(f"{where}: field {name!r}: expected {expected}, got {got}")
        return value

    fmt = field("format", None, repr(FORMAT))
    if fmt != FORMAT:
        raise CheckpointError(f"{where}: field 'format': expected {FORMAT!r}, got {fmt!r}")
    seq = data.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        got = "nothing" if "seq" not in data else repr(seq)
        raise CheckpointError(f"{where}: field 'seq': expected a non-negative integer, got {got}")
    digest = field("hash", _HASH, "64 lowercase hex digits")
    at = field("at", _AT, "an instant YYYY-MM-DDTHH:MM:SS[.ffffff]Z")
    key_id = field("key_id", _KEY_ID, "16 lowercase hex digits")
    signature = field("signature", None, "base64 of a 64-byte Ed25519 signature")
    try:
        raw = base64.b64decode(signature, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 64:
        raise CheckpointError(
            f"{where}: field 'signature': expected base64 of a 64-byte Ed25519 signature, got {signature!r}"
        )
    return Checkpoint(seq, digest, at, key_id, signature, fmt)


def read_checkpoints(path: Path, keys: dict[str, Ed25519PublicKey]) -> list[Anchor]:
    """Every checkpoint line of a JSON-lines file, each signature verified, as anchors.

    A malformed line, an unknown key or a bad signature is refused by file and line. Blank lines
    are skipped.
    """
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CheckpointError(f"{path}: cannot read the checkpoints ({reason})") from None
    if not keys:
        raise CheckpointError(
            f"{path}: checkpoints need the public key(s) they were signed with: --public-key"
        )
    anchors: list[Anchor] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
        checkpoint = parse_checkpoint(data, where=where)
        checkpoint.verify(keys, where=where)
        anchors.append(Anchor(checkpoint.seq, checkpoint.hash, f"checkpoint {path}:{number}"))
    return anchors


def append_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Append one line to a JSON-lines file, durably; the file is never rewritten."""
    try:
        # Append mode (O_APPEND): every write lands at the end, whoever else appends to the file.
        with path.open("ab+") as file:
            file.seek(0, os.SEEK_END)
            line = checkpoint.to_json().encode() + b"\n"
            if file.tell() > 0:
                file.seek(-1, os.SEEK_END)
                if file.read(1) != b"\n":
                    # An earlier write was cut short: keep that fragment on a line of its own,
                    # where `audit verify` will name it, instead of gluing this checkpoint to it.
                    line = b"\n" + line
            file.write(line)
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        raise PublishError(f"cannot append the checkpoint to {path}: {exc.strerror or exc}") from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is not a receipt: a POST followed as a GET would report success for nothing."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def post_checkpoint(url: str, checkpoint: Checkpoint, *, timeout: float = POST_TIMEOUT) -> int:
    """POST the checkpoint as JSON to an http(s) URL; returns the 2xx status, else PublishError."""
    if not url.lower().startswith(("http://", "https://")):
        raise PublishError(f"{url}: only http:// and https:// URLs can receive checkpoints")
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked above: http or https only)
        url,
        data=checkpoint.to_json().encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        raise PublishError(
            f"POST {url} answered {exc.code} {exc.reason}: the checkpoint was not delivered"
        ) from None
    except urllib.error.URLError as exc:
        raise PublishError(f"cannot reach {url} ({exc.reason}): the checkpoint was not delivered") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise PublishError(f"POST {url} failed ({exc!r}): the checkpoint was not delivered") from None
    if not 200 <= status < 300:
        raise PublishError(f"POST {url} answered {status}: the checkpoint was not delivered")
    return status


# -- snapshot manifests -------------------------------------------------------------------------


def manifest_anchor(
    label: str,
    manifest: Path | str,
    registered_sha256: str,
    *,
    read: Callable[[], bytes] | None = None,
) -> Anchor | Unusable:
    """The (watermark, hash_at_watermark) of a snapshot manifest, if it is the registered one.

    Takes plain values (not a registry entry): the ledger package does not import snapshots.
    ``read`` gives the manifest's bytes when it is not a local file (on an object store).
    """
    try:
        body = read() if read is not None else Path(manifest).read_bytes()
    except OSError as exc:
        return Unusable(label, f"{manifest}: cannot be read ({exc.strerror or exc})")
    except ConsentgateError as exc:  # a store that refuses or does not answer
        return Unusable(label, f"{manifest}: cannot be read ({exc})")
    if hashlib.sha256(body).hexdigest() != registered_sha256:
        return Unusable(label, f"{manifest}: changed since the snapshot was registered (sha256 differs)")
    try:
        ledger = json.loads(body)["ledger"]
        seq = ledger["watermark"]
        digest = ledger["hash_at_watermark"]
    except (ValueError, KeyError, TypeError):
        return Unusable(label, f"{manifest}: has no ledger watermark and hash_at_watermark")
    if digest is None and seq == 0:
        digest = GENESIS_HASH  # a snapshot at watermark 0 saw no events
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or not isinstance(digest, str):
        return Unusable(label, f"{manifest}: ledger watermark or hash_at_watermark is not valid")
    return Anchor(seq, digest, label)
