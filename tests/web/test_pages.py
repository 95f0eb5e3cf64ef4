"""Member pages: every setting on one page, receipts, the one action, the notice, GPC, lineage, objections."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi.testclient import TestClient

from consentgate.ledger.events import Source
from consentgate.ledger.store import Ledger
from consentgate.objections import decide_objection
from consentgate.snapshots.registry import Registry, SnapshotEntry
from consentgate.taxonomy import Taxonomy
from consentgate.timeutil import add_months
from tests.conftest import NOW, FixedClock
from tests.web.conftest import MEMBER_A, MEMBER_B, login

NOTICE_REF = "linkedin-2025-11@2"


def _settings(client: TestClient) -> str:
    page = client.get("/settings")
    assert page.status_code == 200, page.text
    return page.text


def _ack(client: TestClient, csrf: str) -> None:
    response = client.post("/notice", data={"csrf_token": csrf, "policy": NOTICE_REF}, follow_redirects=False)
    assert response.status_code == 303


def _state(html: str, key: str) -> str:
    match = re.search(rf'id="setting-{key}".*?data-state="(\w+)"', html, flags=re.S)
    assert match, key
    return match.group(1)


def test_notice_comes_first_records_the_acknowledgement_and_chooses_nothing(
    client: TestClient, portal_ledger: Ledger
) -> None:
    csrf = login(client, "anna")
    first = client.get("/settings", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/notice"
    notice = client.get("/notice").text
    assert "What has changed" in notice and "regions.EEA" in notice
    assert " checked" not in notice, "the notice pre-selects nothing"
    before = {e.key: e.value for e in portal_ledger.member_events(MEMBER_A) if e.kind == "setting_changed"}
    _ack(client, csrf)
    events = portal_ledger.member_events(MEMBER_A)
    assert [(e.kind, e.key) for e in events if e.kind == "notice_acknowledged"] == [
        ("notice_acknowledged", NOTICE_REF)
    ]
    assert {e.key: e.value for e in events if e.kind == "setting_changed"} == before
    assert client.get("/settings", follow_redirects=False).status_code == 200
    assert client.get("/notice", follow_redirects=False).headers["location"] == "/settings"


def test_every_setting_of_the_taxonomy_is_on_the_one_page(client: TestClient, taxonomy: Taxonomy) -> None:
    _ack(client, login(client, "anna"))
    html = _settings(client)
    shown = re.findall(r'data-setting="([a-z0-9_]+)"', html)
    assert sorted(shown) == sorted(taxonomy.settings)
    assert len(shown) == 39
    genai = html.split('id="setting-genai_improvement"')[1].split("</article>")[0]
    assert "Use my data for training content creation AI models" in genai
    assert "Legitimate interest (GDPR Art. 6(1)(f))" in genai
    assert "On: used for Training content-generating AI" in genai
    assert "Never changed: this is the default in your region" in genai
    # Neutral design: both choices are the same kind of control, neither carries a class of its own.
    choices = re.findall(r'<label><input type="radio" name="value" value="(on|off)"', genai)
    assert choices == ["on", "off"]


def test_a_change_becomes_a_ledger_event_with_a_receipt(client: TestClient, portal_ledger: Ledger) -> None:
    csrf = login(client, "anna")
    _ack(client, csrf)
    response = client.post("/settings/genai_improvement", data={"value": "off", "csrf_token": csrf})
    [event] = [e for e in portal_ledger.member_events(MEMBER_A) if e.kind == "setting_changed"]
    assert (event.key, event.value, event.source, event.actor) == (
        "genai_improvement",
        "false",
        "member",
        "member:anna",
    )
    receipt = response.text.split('id="receipt"')[1].split("</section>")[0]
    assert f"#{event.seq}" in receipt and event.hash[:16] in receipt
    assert _state(response.text, "genai_improvement") == "off"
    assert "Off: not used for Training content-generating AI" in response.text


def test_receipts_never_show_another_members_event(client: TestClient, portal_ledger: Ledger) -> None:
    other = portal_ledger.member_events(MEMBER_B)[0]
    _ack(client, login(client, "anna"))
    page = client.get(f"/settings?receipt={other.seq}")
    assert 'id="receipt"' not in page.text


def test_unknown_setting_or_value_is_refused(client: TestClient) -> None:
    csrf = login(client, "anna")
    assert (
        client.post("/settings/no_such_setting", data={"value": "off", "csrf_token": csrf}).status_code == 400
    )
    assert (
        client.post("/settings/genai_improvement", data={"value": "maybe", "csrf_token": csrf}).status_code
        == 422
    )


def test_use_none_lists_then_switches_off_exactly_what_it_listed(
    client: TestClient, portal_ledger: Ledger
) -> None:
    csrf = login(client, "james")
    _ack(client, csrf)
    confirm = client.get("/settings/none").text
    listed = re.findall(r'name="keys" value="([a-z0-9_]+)"', confirm)
    assert "genai_improvement" in listed and "ads_affiliate_sharing" in listed
    assert "invitations_to_connect" not in listed, "feature switches are not AI training or ads"
    assert "Training that has already taken place is not undone" in confirm
    response = client.post("/settings/none", data={"csrf_token": csrf, "keys": listed})
    changed = {e.key: e.value for e in portal_ledger.member_events(MEMBER_B) if e.kind == "setting_changed"}
    assert changed == dict.fromkeys(listed, "false")
    assert response.text.count("<tr>") >= len(listed)
    assert "Nothing to switch off" in response.text
    again = client.post("/settings/none", data={"csrf_token": csrf, "keys": listed})
    assert again.status_code == 200
    assert len([e for e in portal_ledger.member_events(MEMBER_B) if e.kind == "setting_changed"]) == len(
        listed
    )


def test_gpc_opts_out_only_where_the_member_never_chose(client: TestClient, portal_ledger: Ledger) -> None:
    csrf = login(client, "james")
    _ack(client, csrf)
    client.post("/settings/ads_affiliate_sharing", data={"value": "on", "csrf_token": csrf})
    page = client.get("/settings", headers={"Sec-GPC": "1"})
    assert "Global Privacy Control" in page.text
    gpc = [e for e in portal_ledger.member_events(MEMBER_B) if e.source == Source.gpc]
    assert gpc and all(e.value == "false" for e in gpc)
    assert "ads_affiliate_sharing" not in {e.key for e in gpc}, "never over an explicit choice"
    assert _state(page.text, "ads_affiliate_sharing") == "on"
    client.get("/settings", headers={"Sec-GPC": "1"})
    assert len([e for e in portal_ledger.member_events(MEMBER_B) if e.source == Source.gpc]) == len(gpc)


def test_gpc_changes_nothing_where_no_purpose_is_gpc_governed(
    client: TestClient, portal_ledger: Ledger
) -> None:
    _ack(client, login(client, "anna"))
    client.get("/settings", headers={"Sec-GPC": "1"})
    gpc = [e for e in portal_ledger.member_events(MEMBER_A) if e.source == Source.gpc]
    # In the EEA the GPC-governed ad rows rest on consent or are not used, so only unset switches move.
    assert all(e.value == "false" for e in gpc)


def test_where_my_data_went_lists_snapshots_with_the_members_data(
    client: TestClient, portal_ledger: Ledger, tmp_path: Path
) -> None:
    folder = tmp_path / "snap"
    folder.mkdir()
    pq.write_table(
        pa.table(
            {
                "member_id": pa.array([MEMBER_A, MEMBER_A, MEMBER_B], pa.int64()),
                "category": ["content.posts", "profile.skills", "profile.skills"],
                "records": pa.array([3, 2, 7], pa.int64()),
            }
        ),
        folder / "members.parquet",
    )
    entry = SnapshotEntry(
        snapshot_id="genai.training-2025-11-04-abcdef123456",
        kind="snapshot",
        purpose="genai.training",
        as_of=NOW - timedelta(days=300),
        watermark=1,
        policy_ref=NOTICE_REF,
        engine="duckdb",
        records=12,
        members=2,
        manifest_sha256="0" * 64,
        path=folder,
        registered_at=NOW,
    )
    Registry(portal_ledger).register(entry, publish=lambda _conn: None)
    login(client, "anna")
    page = client.get("/data").text
    assert "genai.training-2025-11-04-abcdef123456" in page
    assert "content.posts: 3" in page and "profile.skills: 2" in page
    assert "acts only going forward" in page
    client.cookies.clear()
    login(client, "james")
    assert "profile.skills: 7" in client.get("/data").text


def test_objection_receipt_due_date_and_decision(
    client: TestClient, portal_ledger: Ledger, clock: FixedClock
) -> None:
    csrf = login(client, "anna")
    form = client.get("/objections").text
    offered = re.findall(r'name="purposes" value="([a-z_.]+)"', form)
    assert "genai.training" in offered and "ml.non_generative" in offered
    response = client.post(
        "/objections", data={"csrf_token": csrf, "purposes": ["ml.non_generative"], "grounds": "mine"}
    )
    reference = re.search(r"OBJ-[0-9A-F]{10}", str(response.url))
    assert reference
    receipt = response.text.split('id="receipt"')[1].split("</section>")[0]
    assert reference.group(0) in receipt and "answer due by" in receipt
    due = add_months(NOW, 1)
    assert f"{due:%B} {due.day}, {due.year}" in receipt
    decide_objection(
        portal_ledger, reference=reference.group(0), uphold=False, reason="Compelling grounds.", at=None
    )
    status = client.get(f"/objections/{reference.group(0)}").text
    assert 'data-outcome="rejected"' in status and "Compelling grounds." in status
    assert "supervisory authority" in status


def test_objection_form_refuses_purposes_not_offered(client: TestClient) -> None:
    csrf = login(client, "anna")
    response = client.post("/objections", data={"csrf_token": csrf, "purposes": ["ads.affiliate_sharing"]})
    assert response.status_code == 400 and "Choose at least one of the purposes listed." in response.text
    assert client.post("/objections", data={"csrf_token": csrf}).status_code == 400


def test_a_member_cannot_see_another_members_objection(client: TestClient) -> None:
    csrf = login(client, "anna")
    response = client.post("/objections", data={"csrf_token": csrf, "purposes": ["ml.non_generative"]})
    reference = re.search(r"OBJ-[0-9A-F]{10}", str(response.url))
    assert reference
    client.cookies.clear()
    login(client, "james")
    assert client.get(f"/objections/{reference.group(0)}").status_code == 404
