"""The member-level proof on the web: the API route (DPO, tokens, the member) and the member's own page."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from consentgate.decisions.engine import DecisionEngine
from consentgate.ledger.store import Ledger
from consentgate.snapshots.proof import prove_member
from consentgate.snapshots.registry import Registry
from consentgate.web.accounts import Scope
from consentgate.web.schemas import MemberProofPublic
from tests.conftest import Store, set_setting
from tests.web.conftest import MEMBER_A, MEMBER_B, Tokens, build_genai_snapshot, client_for

API = "/api/v1"
AS_OF = "2025-11-04T00:00:00Z"


@dataclass
class Built:
    snapshot_id: str
    path: Path


@pytest.fixture
def built(portal_ledger: Ledger, engine: DecisionEngine, tmp_path: Path) -> Built:
    """A real genai.training snapshot: member A (Germany) is in it, member B (US) opted out before."""
    set_setting(portal_ledger, MEMBER_B, "genai_improvement", False, "2025-10-01T00:00:00Z")
    result = build_genai_snapshot(portal_ledger, engine, tmp_path, (MEMBER_A, MEMBER_B), as_of=AS_OF)
    return Built(result.snapshot_id, result.path)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def add_lineage_row(snapshot: Path, member_id: int, category: str, records: int) -> None:
    """Tamper with members.parquet: claim ``records`` more of the member's records in ``category``."""
    path = snapshot / "members.parquet"
    table = pq.read_table(path)
    extra = pa.table(
        {
            "member_id": pa.array([member_id], pa.int64()),
            "category": [category],
            "records": pa.array([records], pa.int64()),
        }
    ).cast(table.schema)
    pq.write_table(pa.concat_tables([table, extra]), path)


# --- the API ------------------------------------------------------------------------------------


def test_the_api_gives_the_proof_of_the_cli(
    client: TestClient, tokens: Tokens, portal_ledger: Ledger, engine: DecisionEngine, built: Built
) -> None:
    """The same JSON as ``snapshot prove --json`` for included and excluded members, valid per the schema."""
    for member, included in ((MEMBER_A, True), (MEMBER_B, False)):
        response = client.get(
            f"{API}/snapshots/{built.snapshot_id}/members/{member}",
            headers=bearer(tokens.by_scope[Scope.lineage_read]),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        MemberProofPublic.model_validate(body)
        expected = prove_member(
            registry=Registry(portal_ledger),
            ledger=portal_ledger,
            engine=engine,
            snapshot_id=built.snapshot_id,
            member_id=member,
        )
        assert body == expected.to_dict()
        assert body["ok"] is True and body["included"] is included
    a = client.get(f"{API}/snapshots/{built.snapshot_id}/members/{MEMBER_A}", headers=bearer(tokens.full))
    counts = {c["category"]: c["records"] for c in a.json()["categories"] if c["records"]}
    assert counts == {"content.posts": 2, "profile.skills": 1}
    b = client.get(f"{API}/snapshots/{built.snapshot_id}/members/{MEMBER_B}", headers=bearer(tokens.full))
    [group, *_] = b.json()["denied"]
    assert "profile.skills" in group["categories"]
    assert [r["code"] for r in group["reasons"] if r["code"] == "setting_off"] == ["setting_off"]


def test_the_api_reports_problems_with_status_200_and_unknowns(
    client: TestClient, tokens: Tokens, built: Built
) -> None:
    add_lineage_row(built.path, MEMBER_B, "profile.skills", 3)
    response = client.get(
        f"{API}/snapshots/{built.snapshot_id}/members/{MEMBER_B}", headers=bearer(tokens.full)
    )
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is False and body["included"] is True
    assert [p["code"] for p in body["problems"]] == ["lineage_changed", "records_not_allowed"]
    unknown = client.get(f"{API}/snapshots/{built.snapshot_id}/members/4242", headers=bearer(tokens.full))
    assert unknown.status_code == 200
    assert [r["code"] for g in unknown.json()["denied"] for r in g["reasons"]] == ["unknown_member"]
    missing = client.get(f"{API}/snapshots/nope/members/{MEMBER_A}", headers=bearer(tokens.full))
    assert missing.status_code == 404 and "no snapshot 'nope'" in missing.json()["detail"]


def test_a_member_gets_only_their_own_proof_of_snapshots_holding_their_data(
    app: FastAPI, built: Built
) -> None:
    anna, _ = client_for(app, "anna")
    assert anna.get(f"{API}/snapshots/{built.snapshot_id}/members/{MEMBER_A}").json()["included"] is True
    assert anna.get(f"{API}/snapshots/{built.snapshot_id}/members/{MEMBER_B}").status_code == 403
    james, _ = client_for(app, "james")
    # Not in it and not registered look the same to a member.
    outside = james.get(f"{API}/snapshots/{built.snapshot_id}/members/{MEMBER_B}")
    unknown = james.get(f"{API}/snapshots/nope/members/{MEMBER_B}")
    assert (outside.status_code, unknown.status_code) == (404, 404)
    assert outside.json()["detail"] == unknown.json()["detail"].replace("'nope'", repr(built.snapshot_id))


# --- the member's page --------------------------------------------------------------------------


def test_where_my_data_went_links_to_the_members_proof_page(app: FastAPI, built: Built) -> None:
    anna, _ = client_for(app, "anna")
    link = f'href="/data/snapshots/{built.snapshot_id}"'
    assert link in anna.get("/data").text
    page = anna.get(f"/data/snapshots/{built.snapshot_id}")
    assert page.status_code == 200
    text = page.text
    assert 'data-proof="ok"' in text and "We checked this snapshot again" in text
    skills = text.split('data-category="profile.skills"')[1].split("</tr>")[0]
    assert "<td>1</td>" in skills and "was on by default; you had not changed it." in skills
    assert "Legitimate interest" in skills
    assert 'data-category="profile.name"' not in text  # allowed, but none of A's records: listed apart
    assert "<code>profile.name</code>" in text.split("data-allowed-empty")[1].split("</p>")[0]
    assert 'data-reason="category_never_used"' in text and "<code>messages.private</code>" in text
    assert "#1" in text and "yes, unchanged" in text  # the registration event, its hash checked
    german = anna.get(f"/data/snapshots/{built.snapshot_id}", headers={"accept-language": "de"})
    assert "Ihre Daten in diesem Trainingsdatensatz" in german.text
    assert "standardmäßig eingeschaltet" in german.text


def test_the_proof_page_is_only_for_the_members_own_snapshots(app: FastAPI, built: Built) -> None:
    james, _ = client_for(app, "james")
    assert f"/data/snapshots/{built.snapshot_id}" not in james.get("/data").text
    assert james.get(f"/data/snapshots/{built.snapshot_id}").status_code == 404
    assert james.get("/data/snapshots/nope").status_code == 404
    dpo, _ = client_for(app, "dpo")
    assert dpo.get(f"/data/snapshots/{built.snapshot_id}").status_code == 403


def test_the_proof_page_says_when_the_check_fails(app: FastAPI, built: Built) -> None:
    add_lineage_row(built.path, MEMBER_A, "messages.private", 2)
    anna, _ = client_for(app, "anna")
    page = anna.get(f"/data/snapshots/{built.snapshot_id}").text
    assert 'data-proof="problems"' in page and 'data-problem="records_not_allowed"' in page
    assert "The check found a problem" in page and "GDPR Art. 77" in page
    private = page.split('data-category="messages.private"')[1].split("</tr>")[0]
    assert "<td>2</td>" in private and "Not allowed" in private
    assert str(built.path) not in page  # the member sees no server paths


# --- a snapshot published on an object store ---------------------------------------------------


def test_a_snapshot_on_s3_is_proved_from_its_published_files_and_refused_without_its_marker(
    client: TestClient,
    tokens: Tokens,
    portal_ledger: Ledger,
    engine: DecisionEngine,
    tmp_path: Path,
    store: Store,
) -> None:
    """The server reads the snapshot through the store (the AWS variables of its process); without
    the ``_PUBLISHED`` marker the proof fails closed, naming why."""
    result = build_genai_snapshot(
        portal_ledger, engine, tmp_path, (MEMBER_A, MEMBER_B), as_of=AS_OF, out=store.uri("snaps")
    )
    assert result.uri is not None
    path = f"{API}/snapshots/{result.snapshot_id}/members/{MEMBER_A}"
    body = client.get(path, headers=bearer(tokens.full)).json()
    assert body["ok"] is True and body["included"] is True
    listed = client.get(f"{API}/snapshots/{result.snapshot_id}", headers=bearer(tokens.full)).json()
    assert listed["records"] == result.manifest["counts"]["records_included"]
    shutil.rmtree(tmp_path / "cache")  # another server: no local copy yet
    prefix = result.uri.removeprefix(f"s3://{store.bucket}/")
    store.delete(f"{prefix}/_PUBLISHED")
    refused = client.get(path, headers=bearer(tokens.full)).json()
    assert refused["ok"] is False
    [problem] = [p for p in refused["problems"] if p["code"] == "manifest_missing"]
    assert "_PUBLISHED" in problem["message"]
