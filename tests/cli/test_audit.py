"""``consentgate audit keygen | checkpoint | verify``, run as subprocesses on SQLite and PostgreSQL.

The tampering is what an attacker with write access to the database can do: drop the append-only
triggers, delete or rewrite events, and fix ``ledger_head`` so that the chain alone still verifies.
"""

from __future__ import annotations

import hashlib
import json
import socket
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from consentgate.ledger.anchors import append_checkpoint, load_private_key, sign_checkpoint, write_key_pair
from consentgate.ledger.store import Ledger
from consentgate.snapshots.registry import Registry, SnapshotEntry
from tests.conftest import NOW, set_setting
from tests.helpers import Receiver, cg, cut_tail, flat, lift_guards, ok, rewrite_from
from tests.helpers import one_error_line as error_line


@dataclass
class Setup:
    url: str
    ledger: Ledger
    folder: Path
    hashes: list[str]
    """Chain hashes of the six events; index 0 is seq 1."""

    def cg(self, *args: str) -> subprocess.CompletedProcess[str]:
        return cg(self.url, *args, cwd=self.folder)

    def keygen(self, name: str = "signing.key") -> str:
        """A new key pair in the folder, made by `audit keygen`; returns the key id printed."""
        out = ok(self.cg("audit", "keygen", "--out", name))
        return flat(out).split()[2].rstrip(":")

    def checkpoint(self, key: str = "signing.key", out: str = "checkpoints.jsonl") -> dict[str, object]:
        """The checkpoint `audit checkpoint` printed."""
        return dict(json.loads(ok(self.cg("audit", "checkpoint", "--key", key, "--out", out))))

    def quick_keygen(self, name: str = "signing.key") -> str:
        """What `audit keygen` does, without starting a process (where keygen is not under test)."""
        return write_key_pair(self.folder / name)

    def quick_checkpoint(self, key: str = "signing.key") -> None:
        """What `audit checkpoint` appends, without starting a process."""
        seq, digest = self.ledger.head()
        signed = sign_checkpoint(load_private_key(self.folder / key), seq=seq, digest=digest, at=NOW)
        append_checkpoint(self.folder / "checkpoints.jsonl", signed)

    def verify(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.cg("audit", "verify", *extra)


@pytest.fixture
def setup(ledger: Ledger, ledger_url: str, tmp_path: Path) -> Setup:
    """A ledger of six events on each backend, and a folder to run the CLI in."""
    hashes = [set_setting(ledger, m, "genai_improvement", False, "2025-11-10").hash for m in range(1, 7)]
    return Setup(ledger_url, ledger, tmp_path, hashes)


# For what does not depend on the database (key and checkpoint files, HTTP): CLI runs are slow.
sqlite_only = pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
WITH_CHECKPOINTS = ("--checkpoints", "checkpoints.jsonl", "--public-key", "signing.key.pub")


# -- an attacker with write access to the database ------------------------------------------------


def register_snapshot(setup: Setup, snapshot_id: str, watermark: int, *, sha256: str | None = None) -> None:
    """Register a snapshot whose hand-written manifest records the chain hash at ``watermark``."""
    folder = setup.folder / "snapshots" / snapshot_id
    folder.mkdir(parents=True)
    body = json.dumps(
        {"ledger": {"watermark": watermark, "hash_at_watermark": setup.hashes[watermark - 1]}}
    ).encode()
    (folder / "manifest.json").write_bytes(body)
    entry = SnapshotEntry(
        snapshot_id=snapshot_id,
        kind="snapshot",
        purpose="genai.training",
        as_of=NOW + timedelta(seconds=watermark),
        watermark=watermark,
        policy_ref=None,
        engine="duckdb",
        records=0,
        members=0,
        manifest_sha256=sha256 or hashlib.sha256(body).hexdigest(),
        path=folder,
        registered_at=NOW,
    )
    Registry(setup.ledger).register(entry, publish=lambda _conn: None)


# -- keygen, checkpoint, verify ----------------------------------------------------------------------


def test_keygen_checkpoint_and_verify_agree(setup: Setup) -> None:
    """A checkpoint of the head, appended and printed, verifies with the public key."""
    key_id = setup.keygen()
    assert stat.S_IMODE((setup.folder / "signing.key").stat().st_mode) == 0o600
    assert (setup.folder / "signing.key.pub").read_text("utf-8").startswith("-----BEGIN PUBLIC KEY-----")
    printed = setup.checkpoint()
    assert (printed["seq"], printed["hash"], printed["key_id"]) == (6, setup.hashes[5], key_id)
    assert [json.loads(line) for line in (setup.folder / "checkpoints.jsonl").read_text().splitlines()] == [
        printed
    ]
    set_setting(setup.ledger, 7, "genai_improvement", True, "2025-11-11")
    setup.checkpoint()  # appended: both lines stay
    assert len((setup.folder / "checkpoints.jsonl").read_text().splitlines()) == 2
    out = flat(ok(setup.verify(*WITH_CHECKPOINTS)))
    assert out == "ok: 7 events, chain intact up to seq 7; agrees with 0 snapshot manifests and 2 checkpoints"


@sqlite_only
def test_verify_without_anchors_says_so(setup: Setup) -> None:
    out = flat(ok(setup.verify()))
    assert out.startswith("ok: 6 events, chain intact up to seq 6; no snapshot manifest or checkpoint")


@sqlite_only
def test_keygen_refuses_to_overwrite_a_key(setup: Setup) -> None:
    setup.quick_keygen()
    before = (setup.folder / "signing.key").read_bytes()
    line = error_line(setup.cg("audit", "keygen", "--out", "signing.key"))
    assert "signing.key exists" in line
    assert (setup.folder / "signing.key").read_bytes() == before


@sqlite_only
def test_a_checkpoint_with_a_wrong_signature_is_refused_by_name(setup: Setup) -> None:
    """An edited checkpoint line is refused: file, line, seq, key id and 'bad signature'."""
    key_id = setup.quick_keygen()
    setup.quick_checkpoint()
    path = setup.folder / "checkpoints.jsonl"
    first = json.loads(path.read_text())
    path.write_text(
        json.dumps(first) + "\n" + json.dumps({**first, "seq": 5, "hash": setup.hashes[4]}) + "\n"
    )
    line = error_line(setup.verify(*WITH_CHECKPOINTS))
    assert line.startswith(f"error: checkpoints.jsonl, line 2 (seq 5, key id {key_id}): bad signature")


@sqlite_only
def test_a_checkpoint_signed_by_another_key_is_refused_by_name(setup: Setup) -> None:
    """A checkpoint of a key not given with --public-key is refused as signed by an unknown key."""
    setup.quick_keygen()
    other = setup.quick_keygen("other.key")
    setup.quick_checkpoint()
    setup.quick_checkpoint("other.key")
    line = error_line(setup.verify(*WITH_CHECKPOINTS))
    assert line.startswith(
        f"error: checkpoints.jsonl, line 2 (seq 6, key id {other}): signed by an unknown key"
    )
    ok(setup.verify(*WITH_CHECKPOINTS, "--public-key", "other.key.pub"))  # both keys given: accepted


@sqlite_only
def test_a_malformed_checkpoint_line_is_named(setup: Setup) -> None:
    setup.quick_keygen()
    setup.quick_checkpoint()
    with (setup.folder / "checkpoints.jsonl").open("a") as file:
        file.write('{"format": "consentgate.checkpoint/1", "seq": "six"}\n')
    line = error_line(setup.verify(*WITH_CHECKPOINTS))
    assert line == "error: checkpoints.jsonl, line 2: field 'seq': expected a non-negative integer, got 'six'"


@sqlite_only
def test_checkpoint_refuses_a_key_that_is_not_a_private_key(setup: Setup) -> None:
    setup.quick_keygen()
    line = error_line(setup.cg("audit", "checkpoint", "--key", "signing.key.pub"))
    assert line.startswith("error: signing.key.pub: not an unencrypted PEM private key")
    assert not (setup.folder / "checkpoints.jsonl").exists()


@sqlite_only
def test_public_keys_without_checkpoints_are_refused(setup: Setup) -> None:
    setup.quick_keygen()
    assert "--checkpoints" in error_line(setup.verify("--public-key", "signing.key.pub"))


# -- tampering ---------------------------------------------------------------------------------------


def test_a_removed_tail_with_a_rewound_head_fails_against_an_earlier_checkpoint(setup: Setup) -> None:
    """Delete seq 5-6 and fix ledger_head: plain verify passes, the checkpoint names what is missing."""
    setup.quick_keygen()
    setup.quick_checkpoint()
    cut_tail(setup.ledger, keep=4)
    assert flat(ok(setup.verify())).startswith("ok: 4 events, chain intact up to seq 4")
    line = error_line(setup.verify(*WITH_CHECKPOINTS))
    assert line == (
        f"error: hash chain broken at seq 6: checkpoint checkpoints.jsonl:1 records hash {setup.hashes[5]} "
        "at seq 6, but the ledger has no seq 6 (its head is seq 4): events are missing, removed after the "
        "anchor was taken"
    )


def test_a_recomputed_history_fails_against_a_checkpoint(setup: Setup) -> None:
    """Change seq 3 and recompute every later hash and the head: the checkpoint at seq 6 disagrees."""
    setup.quick_keygen()
    setup.quick_checkpoint()
    rewrite_from(setup.ledger, 3)
    assert flat(ok(setup.verify())).startswith("ok: 6 events, chain intact up to seq 6")
    forged = setup.ledger.hash_at(6)
    line = error_line(setup.verify(*WITH_CHECKPOINTS))
    assert line == (
        f"error: hash chain broken at seq 6: checkpoint checkpoints.jsonl:1 records hash {setup.hashes[5]} "
        f"at seq 6, the ledger has {forged}: events up to seq 6 were changed after the anchor was taken"
    )


def test_a_recomputed_history_is_named_at_the_first_snapshot_manifest_that_disagrees(setup: Setup) -> None:
    """Manifests at seq 2 and 4 and a checkpoint at 6; rewriting seq 3 is named at the snapshot at 4."""
    setup.quick_keygen()
    setup.quick_checkpoint()
    register_snapshot(setup, "s-at-2", 2)
    register_snapshot(setup, "s-at-4", 4)
    out = flat(ok(setup.verify(*WITH_CHECKPOINTS)))
    assert out.endswith("agrees with 2 snapshot manifests and 1 checkpoint")
    rewrite_from(setup.ledger, 3)
    forged = setup.ledger.hash_at(4)
    expected = (
        f"error: hash chain broken at seq 4: snapshot s-at-4 records hash {setup.hashes[3]} at seq 4, "
        f"the ledger has {forged}: events up to seq 4 were changed after the anchor was taken"
    )
    assert error_line(setup.verify()) == expected  # manifests are anchors without any option
    assert error_line(setup.verify(*WITH_CHECKPOINTS)) == expected


@sqlite_only
def test_a_changed_manifest_is_reported_but_does_not_fail_the_chain(setup: Setup) -> None:
    register_snapshot(setup, "s-changed", 4, sha256="0" * 64)
    out = flat(ok(setup.verify()))
    assert "note: snapshot s-changed not used as an anchor:" in out
    assert "changed since the snapshot was registered" in out
    assert out.endswith("(1 snapshot manifest not usable, see above)")


@sqlite_only
def test_checkpoint_refuses_a_head_that_names_a_missing_event(setup: Setup) -> None:
    """A head whose event is gone (tail deleted, head left) is not signed: nothing is appended."""
    setup.quick_keygen()
    lift_guards(setup.ledger)
    with setup.ledger.engine.begin() as conn:
        conn.execute(text("DELETE FROM events WHERE seq > 4"))
    line = error_line(setup.cg("audit", "checkpoint", "--key", "signing.key"))
    assert line.startswith(
        "error: hash chain broken at seq 6: the chain head and the event it names disagree"
    )
    assert not (setup.folder / "checkpoints.jsonl").exists()


# -- POST to a URL ---------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    served = Receiver(204)
    yield served
    served.server.shutdown()
    served.server.server_close()


@sqlite_only
def test_checkpoint_posts_to_a_url(setup: Setup, receiver: Receiver) -> None:
    """--out URL POSTs the checkpoint as JSON and prints it; no file is written."""
    setup.quick_keygen()
    printed = setup.checkpoint(out=receiver.url)
    assert [json.loads(b) for b in receiver.bodies] == [printed]
    assert not (setup.folder / "checkpoints.jsonl").exists()


@sqlite_only
def test_checkpoint_to_a_url_that_refuses_is_one_error_line(setup: Setup, receiver: Receiver) -> None:
    setup.quick_keygen()
    receiver.status = 503
    line = error_line(setup.cg("audit", "checkpoint", "--key", "signing.key", "--out", receiver.url))
    assert (
        line
        == f"error: POST {receiver.url} answered 503 Service Unavailable: the checkpoint was not delivered"
    )


@sqlite_only
def test_checkpoint_to_an_unreachable_host_is_one_error_line(setup: Setup) -> None:
    setup.quick_keygen()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    line = error_line(setup.cg("audit", "checkpoint", "--key", "signing.key", "--out", url))
    assert line.startswith(f"error: cannot reach {url} (") and "not delivered" in line
