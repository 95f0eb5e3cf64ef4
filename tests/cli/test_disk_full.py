"""A full disk, for real: a small tmpfs in a private mount namespace (``unshare --mount``, as root).

Each case runs inside ``unshare --mount sh -c '…'``, so the mount exists only for that shell and
the commands it runs. A failed write must be one line naming what could not be written (exit 74),
leave nothing half-written and publish nothing.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import cg, cli_env

CONSENTGATE = f"{shlex.quote(sys.executable)} -m consentgate"
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"


def in_small_disk(disk: Path, size_kb: int, script: str) -> subprocess.CompletedProcess[str]:
    disk.mkdir(parents=True, exist_ok=True)
    shell = f"mount -t tmpfs -o size={size_kb}k tmpfs {shlex.quote(str(disk))} && {script}"
    done = subprocess.run(
        [UNSHARE, "--mount", "sh", "-c", shell],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=300,
        check=False,
    )
    if "mount:" in done.stderr and "permission denied" in done.stderr.lower():
        pytest.fail("these tests need root (unshare --mount and mount -t tmpfs); run the suite as root")
    return done


def test_an_import_into_a_ledger_on_a_full_disk_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    assert cg(str(ledger), "init", cwd=tmp_path).returncode == 0
    members = tmp_path / "members.csv"
    members.write_text(
        "member_id,country,birth_date,believed_minor\n" + "".join(f"{i},DE,,\n" for i in range(1, 50_001))
    )
    disk = tmp_path / "disk"
    size = ledger.stat().st_size // 1024 + 48
    db = shlex.quote(str(disk / "ledger.db"))
    done = in_small_disk(
        disk,
        size,
        f"cp {shlex.quote(str(ledger))} {db} && "
        f"{CONSENTGATE} --db {db} members import {shlex.quote(str(members))}; echo import=$?; "
        f"{CONSENTGATE} --db {db} audit verify >/dev/null; echo verify=$?; "
        f"{CONSENTGATE} --db {db} member show 1; echo show=$?",
    )
    assert "Traceback" not in done.stderr + done.stdout
    assert "import=74" in done.stdout, done.stdout + done.stderr
    refused = f"error: cannot write the ledger {disk / 'ledger.db'}: the database or the disk is full"
    assert f"{refused}; nothing was changed" in done.stderr
    assert "verify=0" in done.stdout  # the chain is whole
    assert "show=2" in done.stdout and "member 1 is not in the ledger" in done.stderr  # nothing half-imported


def test_a_snapshot_build_on_a_full_disk_names_the_folder_and_publishes_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.db")
    assert cg(db, "init", cwd=tmp_path).returncode == 0
    net = tmp_path / "net"
    synth = cg(db, "synth", "--members", "3000", "--records", "60000", "--out", str(net), cwd=tmp_path)
    assert synth.returncode == 0, synth.stderr
    disk = tmp_path / "disk"
    out = disk / "out"
    build = f"{CONSENTGATE} --db {shlex.quote(db)} snapshot build --purpose genai.training --as-of 2025-11-04"
    data, ok, events = (shlex.quote(str(p)) for p in (net, tmp_path / "ok", disk / "events"))
    done = in_small_disk(
        disk,
        256,
        f"{build} --data {data} --out {shlex.quote(str(out))}; echo build=$?; ls -A {shlex.quote(str(out))}; "
        f"{build} --data {data} --out {ok} --events-dir {events}; echo mirror=$?",
    )
    assert "Traceback" not in done.stderr + done.stdout
    assert (
        "build=74" in done.stdout and f"error: cannot write {out}: No space left on device" in done.stderr
    ), done.stderr
    listed = done.stdout.split("build=74", 1)[1].split("mirror=", 1)[0].split()
    assert listed == ["openlineage.jsonl"], listed  # no snapshot, no partial folder
    assert (
        "mirror=74" in done.stdout
        and f"error: cannot write {disk / 'events'}: No space left on device" in done.stderr
    )


API_WRITE = """
import os
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from consentgate.ledger.store import Ledger
from consentgate.web import PortalConfig, create_app
from consentgate.web.accounts import AccountStore, Scope
from tests.conftest import register

disk = Path(sys.argv[1])
ledger = Ledger.open(f"sqlite:///{disk / 'ledger.db'}", initialise=True)
register(ledger, 1001, "DE")
_, secret = AccountStore(ledger).create_token(name="writer", scopes=frozenset(Scope))
client = TestClient(create_app(PortalConfig(db="(disk)", secret_key="k"), ledger=ledger))
headers = {"authorization": f"Bearer {secret}"}


def put(key: str) -> int:
    url = "/api/v1/members/1001/settings/genai_improvement"
    answer = client.put(url, json={"value": False}, headers={**headers, "idempotency-key": key})
    print(key, answer.status_code, answer.headers.get("content-type"), answer.json().get("detail", ""))
    return answer.status_code


put("before")
filler = disk / "filler"
descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
try:  # fill the disk to the last byte
    while True:
        os.write(descriptor, b"x" * 4096)
except OSError:
    pass
try:
    while True:
        os.write(descriptor, b"x")
except OSError:
    os.close(descriptor)
for i in range(3):
    put(f"full-{i}")
filler.unlink()
put("after")
keys = {e.idempotency_key for e in ledger.member_events(1001)}
print("stored", sorted(k.rsplit(":", 1)[1] for k in keys if k.startswith("api:")))
print("verify", ledger.verify().ok)
"""


def test_an_api_write_on_a_full_disk_is_507_and_nothing_half_written(tmp_path: Path) -> None:
    script = tmp_path / "api_write.py"
    script.write_text(API_WRITE)
    disk = tmp_path / "disk"
    root = Path(__file__).resolve().parents[2]
    done = in_small_disk(
        disk, 4096, f"PYTHONPATH={shlex.quote(str(root))} {shlex.quote(sys.executable)} {script} {disk}"
    )
    assert "Traceback" not in done.stdout, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("before 200"), done.stdout + done.stderr
    for line in lines[1:4]:
        assert line.split()[1] == "507" and "application/problem+json" in line, done.stdout
        assert "nothing was stored" in line
    assert lines[4].startswith("after 200"), done.stdout
    assert lines[5] == "stored ['after', 'before']" and lines[6] == "verify True", done.stdout
