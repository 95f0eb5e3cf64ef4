"""Anchors outside the database: signed checkpoints, snapshot manifests, and verify() against them."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import text

from consentgate.exceptions import AnchorMismatch, ChainBroken, CheckpointError, InputError, PublishError
from consentgate.ledger.anchors import (
    Anchor,
    Checkpoint,
    Unusable,
    append_checkpoint,
    key_id_of,
    load_private_key,
    load_public_keys,
    manifest_anchor,
    post_checkpoint,
    read_checkpoints,
    sign_checkpoint,
    write_key_pair,
)
from consentgate.ledger.events import GENESIS_HASH
from consentgate.ledger.exports import export_events
from consentgate.ledger.store import Ledger
from tests.conftest import NOW, set_setting
from tests.helpers import Receiver, cut_tail, lift_guards, rewrite_from

DOC = Path(__file__).resolve().parents[2] / "docs" / "ledger.md"


# -- an attacker with write access to the database ------------------------------------------------


def six_events(ledger: Ledger) -> list[str]:
    """Six opt-outs; returns their hashes (index 0 is seq 1)."""
    return [
        set_setting(ledger, member, "genai_improvement", False, "2025-11-10").hash for member in range(1, 7)
    ]


# -- keys and checkpoints ---------------------------------------------------------------------------


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def keys_of(*private: Ed25519PrivateKey) -> dict[str, Ed25519PublicKey]:
    return {key_id_of(k.public_key()): k.public_key() for k in private}


def test_keygen_writes_a_private_key_0600_and_its_public_key(tmp_path: Path) -> None:
    """keygen: PKCS8 PEM private key with mode 0600, SubjectPublicKeyInfo PEM next to it, key id printed."""
    key_id = write_key_pair(tmp_path / "signing.key")
    assert stat.S_IMODE((tmp_path / "signing.key").stat().st_mode) == 0o600
    private_pem = (tmp_path / "signing.key").read_bytes()
    public_pem = (tmp_path / "signing.key.pub").read_bytes()
    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8, unencrypted
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")  # SubjectPublicKeyInfo
    raw = serialization.load_pem_public_key(public_pem).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert key_id == hashlib.sha256(raw).hexdigest()[:16]
    assert key_id_of(load_private_key(tmp_path / "signing.key").public_key()) == key_id
    assert list(load_public_keys([tmp_path / "signing.key.pub"])) == [key_id]


@pytest.mark.parametrize("existing", ["signing.key", "signing.key.pub"])
def test_keygen_never_overwrites_a_key_file(tmp_path: Path, existing: str) -> None:
    """An existing private or public key file is refused and left as it was."""
    (tmp_path / existing).write_text("precious", "utf-8")
    with pytest.raises(InputError, match="exists"):
        write_key_pair(tmp_path / "signing.key")
    assert (tmp_path / existing).read_text("utf-8") == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]


def test_a_checkpoint_signs_exactly_the_documented_bytes(key: Ed25519PrivateKey) -> None:
    """A third party can check the signature over format|seq|hash|at|key_id without consentgate."""
    checkpoint = sign_checkpoint(key, seq=42, digest="ab" * 32, at=NOW)
    data = json.loads(checkpoint.to_json())
    assert data["format"] == "consentgate.checkpoint/1"
    assert (data["seq"], data["hash"], data["at"]) == (42, "ab" * 32, "2026-11-23T12:00:00Z")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert data["key_id"] == hashlib.sha256(raw).hexdigest()[:16]
    signed = f"consentgate.checkpoint/1|42|{'ab' * 32}|2026-11-23T12:00:00Z|{data['key_id']}".encode()
    key.public_key().verify(base64.b64decode(data["signature"]), signed)  # raises if not


def write_lines(path: Path, *checkpoints: Checkpoint | str) -> Path:
    path.write_text("".join((c if isinstance(c, str) else c.to_json()) + "\n" for c in checkpoints), "utf-8")
    return path


def test_read_checkpoints_gives_one_anchor_per_line(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    """Each verified line becomes an anchor labelled by file and line; blank lines are skipped."""
    first = sign_checkpoint(key, seq=1, digest="1" * 64, at=NOW)
    second = sign_checkpoint(key, seq=2, digest="2" * 64, at=NOW)
    path = write_lines(tmp_path / "c.jsonl", first, "", second)
    assert read_checkpoints(path, keys_of(key)) == [
        Anchor(1, "1" * 64, f"checkpoint {path}:1"),
        Anchor(2, "2" * 64, f"checkpoint {path}:3"),
    ]


def test_a_checkpoint_with_a_wrong_signature_is_refused_by_line(
    key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    """An altered checkpoint (here its hash) is refused naming line, seq, key id and a bad signature."""
    good = sign_checkpoint(key, seq=1, digest="1" * 64, at=NOW)
    forged = replace(sign_checkpoint(key, seq=2, digest="2" * 64, at=NOW), hash="3" * 64)
    path = write_lines(tmp_path / "c.jsonl", good, forged)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoints(path, keys_of(key))
    assert str(caught.value).startswith(f"{path}, line 2 (seq 2, key id {good.key_id}): bad signature")


def test_a_checkpoint_signed_by_another_key_is_refused_by_line(
    key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    """A checkpoint of a key that was not given is refused: unknown key, with its id and the line."""
    other = Ed25519PrivateKey.generate()
    stranger = sign_checkpoint(other, seq=1, digest="1" * 64, at=NOW)
    path = write_lines(tmp_path / "c.jsonl", stranger)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoints(path, keys_of(key))
    message = str(caught.value)
    assert message.startswith(f"{path}, line 1 (seq 1, key id {stranger.key_id}): signed by an unknown key")
    assert key_id_of(key.public_key()) in message


def test_a_checkpoint_claiming_another_key_id_does_not_verify(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    """The key id is signed too: relabelling another key's checkpoint with a known id fails."""
    other = Ed25519PrivateKey.generate()
    relabelled = replace(
        sign_checkpoint(other, seq=1, digest="1" * 64, at=NOW), key_id=key_id_of(key.public_key())
    )
    with pytest.raises(CheckpointError, match=r"line 1 .*bad signature"):
        read_checkpoints(write_lines(tmp_path / "c.jsonl", relabelled), keys_of(key))


def _valid_object(key: Ed25519PrivateKey) -> dict[str, object]:
    return dict(json.loads(sign_checkpoint(key, seq=1, digest="1" * 64, at=NOW).to_json()))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (None, "not JSON"),
        ({"seq": "1"}, "field 'seq': expected a non-negative integer, got '1'"),
        ({"seq": -1}, "field 'seq': expected a non-negative integer"),
        ({"hash": "ABC"}, "field 'hash': expected 64 lowercase hex digits"),
        ({"at": "2026-11-23 12:00"}, "field 'at': expected an instant"),
        ({"format": "consentgate.checkpoint/2"}, "field 'format': expected 'consentgate.checkpoint/1'"),
        ({"key_id": None}, "field 'key_id': expected 16 lowercase hex digits, got None"),
        ({"signature": "bm90IGEgc2lnbmF0dXJl"}, "field 'signature': expected base64 of a 64-byte"),
    ],
)
def test_a_malformed_line_is_named_by_file_and_line(
    key: Ed25519PrivateKey, tmp_path: Path, change: dict[str, object] | None, expected: str
) -> None:
    """Broken JSON or a field of the wrong form gives one clear error naming the file and the line."""
    good = sign_checkpoint(key, seq=1, digest="1" * 64, at=NOW)
    bad = (
        '{"format": "consentgate.checkpoint/1", "seq": 1'
        if change is None
        else json.dumps({**_valid_object(key), **change})
    )
    path = write_lines(tmp_path / "c.jsonl", good, bad)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoints(path, keys_of(key))
    assert str(caught.value).startswith(f"{path}, line 2: ")
    assert expected in str(caught.value)


def test_a_missing_field_is_named(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    data = _valid_object(key)
    del data["hash"]
    with pytest.raises(CheckpointError, match=r"line 1: field 'hash': expected .*, got nothing"):
        read_checkpoints(write_lines(tmp_path / "c.jsonl", json.dumps(data)), keys_of(key))


def test_checkpoints_without_public_keys_are_refused(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "c.jsonl", sign_checkpoint(key, seq=1, digest="1" * 64, at=NOW))
    with pytest.raises(CheckpointError, match="--public-key"):
        read_checkpoints(path, {})


def test_append_checkpoint_only_ever_appends(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    """What the file held stays byte for byte; a cut-short last line keeps a line of its own."""
    path = tmp_path / "c.jsonl"
    first = sign_checkpoint(key, seq=1, digest="1" * 64, at=NOW)
    append_checkpoint(path, first)
    before = path.read_bytes()
    second = sign_checkpoint(key, seq=2, digest="2" * 64, at=NOW)
    append_checkpoint(path, second)
    assert path.read_bytes() == before + second.to_json().encode() + b"\n"
    with path.open("ab") as file:
        file.write(b'{"format": "consentg')  # a write a crash cut short
    append_checkpoint(path, first)
    lines = path.read_text("utf-8").splitlines()
    assert lines[2] == '{"format": "consentg' and lines[3] == first.to_json()
    with pytest.raises(CheckpointError, match="line 3: not JSON"):
        read_checkpoints(path, keys_of(key))


def test_append_checkpoint_to_a_missing_folder_is_a_publish_error(
    key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    with pytest.raises(PublishError, match="cannot append the checkpoint to"):
        append_checkpoint(tmp_path / "no" / "c.jsonl", sign_checkpoint(key, seq=1, digest="1" * 64, at=NOW))


# -- POST to a URL -------------------------------------------------------------------------------


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    served = Receiver(request.param)
    yield served
    served.close()


@pytest.mark.parametrize("receiver", [201], indirect=True)
def test_post_checkpoint_sends_the_json_object(key: Ed25519PrivateKey, receiver: Receiver) -> None:
    checkpoint = sign_checkpoint(key, seq=3, digest="3" * 64, at=NOW)
    assert post_checkpoint(receiver.url, checkpoint) == 201
    assert [json.loads(b) for b in receiver.bodies] == [checkpoint.to_dict()]


@pytest.mark.parametrize("receiver", [500, 403, 302], indirect=True)
def test_post_checkpoint_refuses_an_answer_that_is_not_2xx(
    key: Ed25519PrivateKey, receiver: Receiver
) -> None:
    """An error, a refusal or a redirect is not a receipt: the checkpoint was not delivered."""
    with pytest.raises(PublishError, match=f"answered {receiver.status}.*not delivered"):
        post_checkpoint(receiver.url, sign_checkpoint(key, seq=3, digest="3" * 64, at=NOW))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_post_checkpoint_to_an_unreachable_host(key: Ed25519PrivateKey) -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    with pytest.raises(PublishError, match=f"cannot reach {re.escape(url)}"):
        post_checkpoint(url, sign_checkpoint(key, seq=3, digest="3" * 64, at=NOW), timeout=5)


# -- snapshot manifests ---------------------------------------------------------------------------


def write_manifest(folder: Path, watermark: int, digest: str | None) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"ledger": {"watermark": watermark, "hash_at_watermark": digest}}).encode()
    (folder / "manifest.json").write_bytes(body)
    return hashlib.sha256(body).hexdigest()


def test_a_registered_manifest_is_an_anchor_at_its_watermark(tmp_path: Path) -> None:
    sha = write_manifest(tmp_path, 4, "4" * 64)
    assert manifest_anchor("snapshot s", tmp_path / "manifest.json", sha) == Anchor(4, "4" * 64, "snapshot s")


def test_a_manifest_at_watermark_0_anchors_the_empty_chain(tmp_path: Path) -> None:
    sha = write_manifest(tmp_path, 0, None)
    assert manifest_anchor("snapshot s", tmp_path / "manifest.json", sha) == Anchor(
        0, GENESIS_HASH, "snapshot s"
    )


def test_a_changed_or_missing_manifest_is_not_an_anchor(tmp_path: Path) -> None:
    """A manifest that is not the registered one cannot vouch for the chain; it is reported, not used."""
    sha = write_manifest(tmp_path, 4, "4" * 64)
    write_manifest(tmp_path, 4, "5" * 64)
    changed = manifest_anchor("snapshot s", tmp_path / "manifest.json", sha)
    assert isinstance(changed, Unusable) and "changed since the snapshot was registered" in changed.reason
    missing = manifest_anchor("snapshot s", tmp_path / "gone" / "manifest.json", sha)
    assert isinstance(missing, Unusable) and "cannot be read" in missing.reason


# -- verify() against anchors, on SQLite and PostgreSQL ---------------------------------------------


def test_verify_counts_the_anchors_that_agree(ledger: Ledger) -> None:
    hashes = six_events(ledger)
    anchors = [Anchor(6, hashes[5], "b"), Anchor(0, GENESIS_HASH, "genesis"), Anchor(2, hashes[1], "a")]
    report = ledger.verify(anchors=anchors)
    assert (report.ok, report.events_checked, report.anchors_agreed) == (True, 6, 3)


def test_a_removed_tail_with_a_rewound_head_is_found_by_a_checkpoint(
    ledger: Ledger, key: Ed25519PrivateKey
) -> None:
    """Deleting the newest events and fixing ledger_head passes the chain alone, not a checkpoint."""
    six_events(ledger)
    seq, digest = ledger.head()
    checkpoint = sign_checkpoint(key, seq=seq, digest=digest, at=NOW)
    cut_tail(ledger, ledger.head()[0] - 2)
    assert ledger.verify().ok  # the chain alone cannot tell
    report = ledger.verify(anchors=[Anchor(checkpoint.seq, checkpoint.hash, "checkpoint c.jsonl:1")])
    assert (report.ok, report.bad_seq, report.ledger_hash, report.events_checked) == (False, 6, None, 4)
    error = report.error()
    assert isinstance(error, AnchorMismatch)
    assert str(error) == (
        f"hash chain broken at seq 6: checkpoint c.jsonl:1 records hash {digest} at seq 6, but the ledger "
        "has no seq 6 (its head is seq 4): events are missing, removed after the anchor was taken"
    )


def test_a_recomputed_history_is_named_at_the_first_anchor_that_disagrees(ledger: Ledger) -> None:
    """Change seq 3 and recompute every later hash and the head: the first disagreeing anchor is named."""
    hashes = six_events(ledger)
    anchors = [
        Anchor(6, hashes[5], "checkpoint c.jsonl:1"),
        Anchor(4, hashes[3], "snapshot s4"),
        Anchor(2, hashes[1], "snapshot s2"),
    ]
    rewrite_from(ledger, 3)
    assert ledger.verify().ok  # the chain alone cannot tell
    forged_4 = ledger.hash_at(4)
    assert forged_4 is not None and forged_4 != hashes[3]
    report = ledger.verify(anchors=anchors)
    assert (report.ok, report.bad_seq, report.anchors_agreed) == (False, 4, 1)
    assert report.anchor == anchors[1] and report.ledger_hash == forged_4
    assert str(report.error()) == (
        f"hash chain broken at seq 4: snapshot s4 records hash {hashes[3]} at seq 4, the ledger has "
        f"{forged_4}: events up to seq 4 were changed after the anchor was taken"
    )


def test_a_chain_error_before_an_anchor_keeps_its_own_message(ledger: Ledger) -> None:
    """An edit the chain itself catches is reported as before, even with anchors given."""
    hashes = six_events(ledger)
    lift_guards(ledger)
    with ledger.engine.begin() as conn:
        conn.execute(text("UPDATE events SET value = 'true' WHERE seq = 3"))
    report = ledger.verify(anchors=[Anchor(5, hashes[4], "checkpoint c.jsonl:1")])
    assert (report.ok, report.bad_seq, report.anchor) == (False, 3, None)
    error = report.error()
    assert type(error) is ChainBroken
    assert str(error) == (
        "hash chain broken at seq 3: changed: its contents do not match its hash"
        " (2 events before it verified)"
    )


def test_an_anchor_that_disagrees_at_seq_0_is_named(ledger: Ledger) -> None:
    report = ledger.verify(anchors=[Anchor(0, "f" * 64, "checkpoint c.jsonl:1")])
    assert (report.ok, report.bad_seq, report.ledger_hash) == (False, 0, GENESIS_HASH)


# -- the documented check ------------------------------------------------------------------------------


def _checkpoint_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), re.S)
    [snippet] = [str(b) for b in blocks if "checkpoints.jsonl" in b]
    return snippet


def test_the_documented_checkpoint_check_works_and_catches_a_rewrite(ledger: Ledger, tmp_path: Path) -> None:
    """The Python in docs/ledger.md verifies real checkpoints against an export, and fails on a rewrite."""
    write_key_pair(tmp_path / "signing.key")
    key = load_private_key(tmp_path / "signing.key")
    six_events(ledger)
    for seq in (0, 3, 6):
        digest = ledger.hash_at(seq) or GENESIS_HASH
        append_checkpoint(
            tmp_path / "checkpoints.jsonl", sign_checkpoint(key, seq=seq, digest=digest, at=NOW)
        )
    export_events(ledger, tmp_path / "events.parquet", fmt="parquet")
    run = [sys.executable, "-c", _checkpoint_snippet()]
    checked = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr

    rewrite_from(ledger, 5)
    export_events(ledger, tmp_path / "events.parquet", fmt="parquet")
    forged = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert forged.returncode != 0 and "line 3: seq 6 is" in forged.stderr, forged.stderr
