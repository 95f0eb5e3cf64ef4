"""The DPO console: objections by due date, decisions, extensions, chain status, debt and charts."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from consentgate.decisions.engine import DecisionEngine
from consentgate.ledger.events import EventDraft, EventKind, Source
from consentgate.ledger.state import ObjectionOutcome
from consentgate.ledger.store import Ledger
from consentgate.objections import decide_objection, file_objection, get_objection, list_objections
from consentgate.policy import load_timeline
from consentgate.snapshots.registry import Registry, SnapshotEntry
from consentgate.taxonomy import Taxonomy, load_taxonomy
from consentgate.timeutil import to_micros
from consentgate.web.console import objection_weeks, optout_rates
from tests.conftest import NOW, FixedClock, at, register, set_setting
from tests.ledger.test_store import _tamper
from tests.web.conftest import MEMBER_A, client_for, login

SVG_NS = "{http://www.w3.org/2000/svg}"
PURPOSE = "ml.non_generative"


def _file(ledger: Ledger, taxonomy: Taxonomy, member_id: int = MEMBER_A) -> str:
    [status] = file_objection(ledger, taxonomy, member_id=member_id, purposes=[PURPOSE], at=None)
    return status.reference


def _svgs(html: str) -> list[ET.Element]:
    # Our own page, parsed to prove it is well-formed XML.
    return [ET.fromstring(m) for m in re.findall(r"<svg\b.*?</svg>", html, flags=re.S)]  # noqa: S314


def _decision_events(ledger: Ledger, reference: str) -> list[str]:
    return [e.kind for e in ledger.objection_events(reference)]


# --- access -----------------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client: TestClient) -> None:
    response = client.get("/console", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


def test_a_member_may_not_open_the_console(client: TestClient) -> None:
    login(client, "anna")
    assert client.get("/console").status_code == 403
    assert client.get("/console/objections/OBJ-X").status_code == 403


def test_post_without_csrf_token_is_refused(
    client: TestClient, portal_ledger: Ledger, taxonomy: Taxonomy
) -> None:
    reference = _file(portal_ledger, taxonomy)
    login(client, "dpo")
    response = client.post(
        f"/console/objections/{reference}/decide", data={"outcome": "uphold", "reason": "fine"}
    )
    assert response.status_code == 403
    assert _decision_events(portal_ledger, reference) == [EventKind.objection_received]


def test_a_member_cannot_decide_even_with_a_token(
    app: FastAPI, portal_ledger: Ledger, taxonomy: Taxonomy
) -> None:
    reference = _file(portal_ledger, taxonomy)
    member, token = client_for(app, "anna")
    response = member.post(
        f"/console/objections/{reference}/decide",
        data={"outcome": "uphold", "reason": "mine", "csrf_token": token},
    )
    assert response.status_code == 403
    assert get_objection(portal_ledger, reference).outcome is ObjectionOutcome.pending


# --- the list ---------------------------------------------------------------------------------------


def test_objections_are_listed_by_due_date_with_overdue_marked(
    client: TestClient, portal_ledger: Ledger, taxonomy: Taxonomy, clock: FixedClock
) -> None:
    clock.now = NOW - timedelta(days=50)
    old = _file(portal_ledger, taxonomy)
    clock.now = NOW - timedelta(days=40)
    decided = _file(portal_ledger, taxonomy)
    clock.now = NOW - timedelta(days=3)
    recent = _file(portal_ledger, taxonomy)
    clock.now = NOW
    token = login(client, "dpo")
    client.post(
        f"/console/objections/{decided}/decide",
        data={"outcome": "reject", "reason": "compelling grounds", "csrf_token": token},
    )
    page = client.get("/console")
    assert page.status_code == 200
    rows = re.findall(r'<tr class="objection( overdue)?" data-reference="([^"]+)"', page.text)
    assert [ref for _, ref in rows] == [old, decided, recent]
    assert {ref: bool(flag) for flag, ref in rows} == {old: True, decided: False, recent: False}
    old_row = page.text.split(f'data-reference="{old}"')[1].split("</tr>")[0]
    assert "overdue" in old_row and 'class="overdue"' in old_row  # in words, not by colour alone
    assert str(MEMBER_A) in old_row and PURPOSE in old_row
    assert re.search(r'id="count-pending">2<', page.text)
    assert re.search(r'id="count-overdue">1<', page.text)
    assert re.search(r'id="count-decided">1<', page.text)


def test_chain_status_is_intact_then_broken_after_tampering(
    client: TestClient, portal_ledger: Ledger
) -> None:
    login(client, "dpo")
    page = client.get("/console")
    head = portal_ledger.watermark()
    assert "Intact" in page.text and f"({head} events)" in page.text
    _tamper(portal_ledger, "UPDATE events SET value = 'XX' WHERE seq = 2")
    page = client.get("/console")
    assert page.status_code == 200
    assert "Broken" in page.text and "at seq 2" in page.text
    assert "changed: its contents do not match its hash" in page.text


# --- deciding and extending ---------------------------------------------------------------------------


@pytest.mark.parametrize(("outcome", "expected"), [("uphold", "upheld"), ("reject", "rejected")])
def test_a_decision_is_recorded_and_shown(
    client: TestClient, portal_ledger: Ledger, taxonomy: Taxonomy, outcome: str, expected: str
) -> None:
    reference = _file(portal_ledger, taxonomy)
    token = login(client, "dpo")
    detail = client.get(f"/console/objections/{reference}")
    assert detail.status_code == 200
    assert (
        "decide-uphold" in detail.text and "decide-reject" in detail.text and 'class="extend"' in detail.text
    )
    response = client.post(
        f"/console/objections/{reference}/decide",
        data={"outcome": outcome, "reason": "  weighed the grounds  ", "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/console/objections/{reference}?recorded=decision"
    status = get_objection(portal_ledger, reference)
    assert status.outcome == expected
    assert status.decision_reason == "weighed the grounds"
    assert status.decision is not None and status.decision.actor == "dpo:dpo"
    assert status.decision.source == "dpo"
    page = client.get(response.headers["location"])
    assert "The decision was recorded in the ledger." in page.text
    assert "weighed the grounds" in page.text and f'<dd class="status">{expected}</dd>' in page.text
    assert "decide-uphold" not in page.text  # decided: no more forms
    again = client.post(
        f"/console/objections/{reference}/decide",
        data={"outcome": "uphold", "reason": "twice", "csrf_token": token},
    )
    assert again.status_code == 409
    assert f"was already {expected}" in again.text
    assert _decision_events(portal_ledger, reference).count(EventKind.objection_decided) == 1


def test_a_decision_without_reasons_records_nothing(
    client: TestClient, portal_ledger: Ledger, taxonomy: Taxonomy
) -> None:
    reference = _file(portal_ledger, taxonomy)
    token = login(client, "dpo")
    head = portal_ledger.watermark()
    for data in ({"outcome": "reject", "reason": "   "}, {"outcome": "uphold"}):
        response = client.post(f"/console/objections/{reference}/decide", data={**data, "csrf_token": token})
        assert response.status_code == 400
        assert "a decision must give its reasons" in response.text
        assert 'role="alert"' in response.text and "decide-reject" in response.text
    bad = client.post(
        f"/console/objections/{reference}/decide",
        data={"outcome": "maybe", "reason": "x", "csrf_token": token},
    )
    assert bad.status_code == 400 and "uphold or to reject" in bad.text
    assert portal_ledger.watermark() == head
    assert get_objection(portal_ledger, reference).outcome is ObjectionOutcome.pending


def test_unknown_objection_is_404(client: TestClient) -> None:
    login(client, "dpo")
    assert client.get("/console/objections/OBJ-NOPE").status_code == 404


def test_extension_within_the_first_month(
    client: TestClient, portal_ledger: Ledger, taxonomy: Taxonomy, clock: FixedClock
) -> None:
    reference = _file(portal_ledger, taxonomy)
    before = get_objection(portal_ledger, reference)
    clock.now = NOW + timedelta(days=10)
    token = login(client, "dpo")
    response = client.post(
        f"/console/objections/{reference}/extend",
        data={"months": "2", "reason": "many similar requests", "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    status = get_objection(portal_ledger, reference)
    assert status.extension_months == 2 and status.due > before.due
    assert status.extension is not None and status.extension.actor == "dpo:dpo"
    page = client.get(response.headers["location"])
    assert "The extension was recorded in the ledger." in page.text
    assert 'class="extend"' not in page.text  # only one extension
    twice = client.post(
        f"/console/objections/{reference}/extend",
        data={"months": "1", "reason": "again", "csrf_token": token},
    )
    assert twice.status_code == 409 and "already extended" in twice.text
    assert _decision_events(portal_ledger, reference).count(EventKind.objection_extended) == 1


def test_extension_after_the_first_month_is_refused(
    client: TestClient, portal_ledger: Ledger, taxonomy: Taxonomy, clock: FixedClock
) -> None:
    reference = _file(portal_ledger, taxonomy)
    clock.now = NOW + timedelta(days=40)
    token = login(client, "dpo")
    detail = client.get(f"/console/objections/{reference}")
    assert 'class="extend"' not in detail.text and "can no longer be extended" in detail.text
    head = portal_ledger.watermark()
    response = client.post(
        f"/console/objections/{reference}/extend",
        data={"months": "1", "reason": "complex", "csrf_token": token},
    )
    assert response.status_code == 409
    assert "within one month of receipt" in response.text
    assert portal_ledger.watermark() == head


def test_extension_input_errors(client: TestClient, portal_ledger: Ledger, taxonomy: Taxonomy) -> None:
    reference = _file(portal_ledger, taxonomy)
    token = login(client, "dpo")
    head = portal_ledger.watermark()
    cases = [
        ({"months": "3", "reason": "x"}, "by 1 or 2 months"),
        ({"months": "two", "reason": "x"}, "one or two months"),
        ({"months": "1", "reason": ""}, "why the answer takes longer"),
    ]
    for data, message in cases:
        response = client.post(f"/console/objections/{reference}/extend", data={**data, "csrf_token": token})
        assert response.status_code == 400, data
        assert message in response.text
    assert portal_ledger.watermark() == head


# --- charts -----------------------------------------------------------------------------------------


def test_charts_are_valid_accessible_svg_with_their_series(
    client: TestClient, portal_ledger: Ledger, taxonomy: Taxonomy
) -> None:
    _file(portal_ledger, taxonomy)
    login(client, "dpo")
    page = client.get("/console")
    svgs = _svgs(page.text)
    assert len(svgs) == 2
    by_id = {svg.get("id"): svg for svg in svgs}
    for svg in svgs:
        assert svg.get("role") == "img"
        assert svg.find(f"{SVG_NS}title") is not None and svg.find(f"{SVG_NS}desc") is not None
        assert not [e for e in svg.iter() if "style" in e.attrib]  # the CSP allows no inline style
    optout = by_id["chart-optout"]
    keys = [g.get("data-series") for g in optout.iter(f"{SVG_NS}g") if g.get("class") == "series"]
    assert keys == ["EEA", "ROW"]  # member A (Germany) and member B (United States)
    legend = "".join(optout.itertext())
    assert "EU/EEA" in legend and "Rest of the world" in legend
    bars = by_id["chart-objections"]
    keys = [g.get("data-series") for g in bars.iter(f"{SVG_NS}g") if g.get("class") == "series"]
    assert keys == ["received", "decided", "overdue"]
    assert bars.find(f"{SVG_NS}defs/{SVG_NS}pattern") is not None
    received = next(g for g in bars.iter(f"{SVG_NS}g") if g.get("data-series") == "received")
    assert len(received.findall(f"{SVG_NS}rect")) == 26
    # the data tables under the charts
    assert 'id="chart-optout-data"' in page.text and 'id="chart-objections-data"' in page.text
    assert "2024-09" in page.text and "2026-11" in page.text and "2026-W48" in page.text


def test_optout_rate_for_a_known_population(app: FastAPI, portal_ledger: Ledger, clock: FixedClock) -> None:
    # EEA: 1001 (fixture), 2001, 2002 (FR), 2003 joins in 2025-06; 2004 moves from the US to DE in 2025-02.
    # ROW: 1004 (fixture, never chooses), 2004 until it moves.
    register(portal_ledger, 2001, "DE")
    register(portal_ledger, 2002, "FR")
    register(portal_ledger, 2003, "DE", registered_at="2025-06-10T00:00:00Z")
    register(portal_ledger, 2004, "US")
    set_setting(portal_ledger, MEMBER_A, "genai_improvement", False, "2025-01-15T00:00:00Z")
    set_setting(portal_ledger, 2002, "genai_improvement", False, "2024-10-10T00:00:00Z")
    set_setting(portal_ledger, 2002, "genai_improvement", True, "2025-03-01T00:00:00Z")
    set_setting(portal_ledger, 2004, "genai_improvement", False, "2024-12-01T00:00:00Z")
    set_setting(portal_ledger, 2001, "genai_improvement", True, "2024-11-05T00:00:00Z")  # explicit on
    set_setting(portal_ledger, 2003, "genai_improvement", False, "2026-11-30T00:00:00Z")  # not yet
    portal_ledger.append(
        [
            _fact(2004, "country", "DE", "2025-02-20T00:00:00Z"),
        ]
    )
    rates = optout_rates(app.state.portal, NOW)
    assert rates.months[0] == "2024-09" and rates.months[-1] == "2026-11" and len(rates.months) == 27
    month = {label: i for i, label in enumerate(rates.months)}

    def eea(label: str) -> tuple[int, int]:
        return rates.off["EEA"][month[label]], rates.registered["EEA"][month[label]]

    def row(label: str) -> tuple[int, int]:
        return rates.off["ROW"][month[label]], rates.registered["ROW"][month[label]]

    assert eea("2024-09") == (0, 3) and row("2024-09") == (0, 2)
    assert eea("2024-10") == (1, 3)  # 2002 off
    assert eea("2024-12") == (1, 3) and row("2024-12") == (1, 2)  # 2004 off, still in the US
    assert eea("2025-01") == (2, 3)  # 1001 off too
    assert eea("2025-02") == (3, 4) and row("2025-02") == (0, 1)  # 2004 moved, with its choice
    assert eea("2025-03") == (2, 4)  # 2002 back on
    assert eea("2025-06") == (2, 5)  # 2003 joined
    assert eea("2026-11") == (2, 5)  # 2003's change takes effect after now
    assert rates.rate("EEA", month["2025-03"]) == pytest.approx(50.0)
    assert rates.rate("ROW", month["2024-12"]) == pytest.approx(50.0)
    assert rates.regions == ["EEA", "ROW"]


def test_optout_numbers_appear_in_the_chart_table(
    client: TestClient, portal_ledger: Ledger, clock: FixedClock
) -> None:
    set_setting(portal_ledger, MEMBER_A, "genai_improvement", False, "2025-01-15T00:00:00Z")
    login(client, "dpo")
    page = client.get("/console")
    table = page.text.split('id="chart-optout-data"')[1].split("</table>")[0]
    december = table.split('<th scope="row">2024-12</th>')[1].split("</tr>")[0]
    january = table.split('<th scope="row">2025-01</th>')[1].split("</tr>")[0]
    assert '<td data-series="EEA">0.0 %</td>' in december
    assert '<td data-series="EEA">100.0 %</td>' in january
    assert '<td data-series="ROW">0.0 %</td>' in january


def test_objection_weeks_count_received_decided_and_overdue(
    portal_ledger: Ledger, taxonomy: Taxonomy, clock: FixedClock
) -> None:
    clock.now = at("2026-09-01T10:00:00Z")  # a Tuesday, ISO week 36
    late = _file(portal_ledger, taxonomy)
    clock.now = at("2026-11-17T10:00:00Z")  # ISO week 47
    answered = _file(portal_ledger, taxonomy)
    clock.now = at("2026-11-18T10:00:00Z")
    decide_objection(portal_ledger, reference=answered, uphold=True, reason="ok", at=None)
    counts = objection_weeks(list_objections(portal_ledger), NOW)
    week = {label: i for i, label in enumerate(counts.weeks)}
    assert len(counts.weeks) == 26 and counts.weeks[-1] == "2026-W48"
    assert counts.received[week["2026-W36"]] == 1 and counts.received[week["2026-W47"]] == 1
    assert counts.decided[week["2026-W47"]] == 1 and sum(counts.decided) == 1
    # due 2026-10-01: overdue at the end of week 40 (ends 5 Oct) onwards, never before
    assert counts.overdue[week["2026-W39"]] == 0
    assert counts.overdue[week["2026-W40"]] == 1 and counts.overdue[week["2026-W48"]] == 1
    assert late in {s.reference for s in list_objections(portal_ledger, overdue_only=True, at=NOW)}


# --- snapshots and debt -----------------------------------------------------------------------------


def test_snapshot_and_model_debt(
    client: TestClient, portal_ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "snap"
    folder.mkdir()
    pq.write_table(
        pa.table(
            {
                "member_id": pa.array([1001, 1004], pa.int64()),
                "category": ["content.posts"] * 2,
                "records": pa.array([1, 1], pa.int64()),
            }
        ),
        folder / "members.parquet",
    )
    as_of = at("2025-11-04T00:00:00Z")
    policy = DecisionEngine(load_taxonomy(), load_timeline([], include_builtin=True)).timeline.in_force(as_of)
    assert policy is not None
    manifest = {"governing_settings": ["genai_improvement"], "policy": {"hash": policy.content_hash()}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    registry = Registry(portal_ledger)
    entry = SnapshotEntry(
        snapshot_id="snap-1",
        kind="training",
        purpose="genai.training",
        as_of=as_of,
        watermark=portal_ledger.watermark(),
        policy_ref=None,
        engine="duckdb",
        records=2,
        members=2,
        manifest_sha256="0" * 64,
        path=folder,
        registered_at=NOW,
    )
    registry.register(entry, publish=lambda _conn: None)
    registry.register_model("model-a", ["snap-1"], at=NOW)
    set_setting(portal_ledger, MEMBER_A, "genai_improvement", False, "2025-06-01T00:00:00Z")
    login(client, "dpo")
    page = client.get("/console")
    assert page.status_code == 200
    snapshot_row = page.text.split('data-snapshot="snap-1"')[1].split("</tr>")[0]
    assert "1 members" in snapshot_row and "/console/snapshots/snap-1/debt" in snapshot_row
    model_row = page.text.split('data-model="model-a"')[1].split("</tr>")[0]
    assert "1 members" in model_row and "/console/models/model-a/debt" in model_row
    listing = client.get("/console/models/model-a/debt")
    assert listing.status_code == 200
    assert "<td>1001</td>" in listing.text and "<td>1004</td>" not in listing.text
    assert client.get("/console/snapshots/snap-1/debt").status_code == 200
    assert client.get("/console/snapshots/nope/debt").status_code == 404


def _fact(member_id: int, key: str, value: str, when: str) -> EventDraft:
    return EventDraft(
        member_id,
        EventKind.member_fact,
        key,
        value,
        to_micros(at(when)),
        Source.import_,
        "test",
        f"test:{member_id}:{key}:{when}",
    )
