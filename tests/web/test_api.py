"""The JSON API under /api/v1 on SQLite and PostgreSQL: who may call what, receipts, decisions, objections."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from consentgate.ledger.events import EventKind
from consentgate.ledger.store import Ledger
from consentgate.snapshots.registry import Registry, SnapshotEntry
from consentgate.web.accounts import Scope
from consentgate.web.schemas import MAX_BATCH
from tests.conftest import NOW, FixedClock, at
from tests.web.conftest import MEMBER_A, MEMBER_B, Tokens, client_for

API = "/api/v1"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def settings_of(portal_ledger: Ledger, member_id: int) -> list[tuple[str, str, str, str]]:
    return [
        (e.key, e.value, e.source, e.actor)
        for e in portal_ledger.member_events(member_id)
        if e.kind == EventKind.setting_changed
    ]


# --- authentication and authorisation ----------------------------------------------------------


def test_anonymous_is_401_as_json(client: TestClient) -> None:
    for path in (
        f"/members/{MEMBER_A}/settings",
        "/decisions?member_id=1001&category=profile.skills&purpose=genai.training",
        "/objections",
        "/snapshots",
        f"/members/{MEMBER_A}/lineage",
    ):
        response = client.get(API + path)
        assert response.status_code == 401, path
        assert "authentication required" in response.json()["detail"]


def test_bad_bearer_is_401(client: TestClient) -> None:
    response = client.get(f"{API}/members/{MEMBER_A}/settings", headers=bearer("cgt_nope_nope"))
    assert response.status_code == 401
    assert "unknown, revoked or malformed" in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "needs"),
    [
        ("GET", f"/members/{MEMBER_A}/settings", Scope.settings_read),
        ("PUT", f"/members/{MEMBER_A}/settings/genai_improvement", Scope.settings_write),
        (
            "GET",
            "/decisions?member_id=1001&category=profile.skills&purpose=genai.training",
            Scope.decisions_read,
        ),
        ("POST", "/decisions", Scope.decisions_read),
        ("GET", f"/members/{MEMBER_A}/objections", Scope.objections_read),
        ("POST", f"/members/{MEMBER_A}/objections", Scope.objections_write),
        ("GET", "/objections", Scope.objections_read),
        ("GET", "/objections/OBJ-0000000000", Scope.objections_read),
        ("GET", "/snapshots", Scope.lineage_read),
        ("GET", f"/members/{MEMBER_A}/lineage", Scope.lineage_read),
        ("GET", "/models", Scope.lineage_read),
        ("POST", "/models", Scope.models_write),
    ],
)
def test_a_token_needs_the_routes_scope(
    client: TestClient, tokens: Tokens, method: str, path: str, needs: Scope
) -> None:
    posts: dict[str, object] = {
        "/decisions": {"requests": [{"member_id": 1, "category": "a.b", "purpose": "c.d"}]},
        "/models": {"name": "m", "snapshots": ["nope"]},  # an unknown snapshot: 404 once allowed
    }
    bodies = {"PUT": {"value": False}, "POST": posts.get(path, {"purposes": ["genai.training"]})}
    for scope, secret in tokens.by_scope.items():
        response = client.request(method, API + path, headers=bearer(secret), json=bodies.get(method))
        if scope is needs:
            assert response.status_code < 400 or response.status_code == 404, (scope, response.text)
        else:
            assert response.status_code == 403, (scope, response.text)
            assert needs.value in response.json()["detail"]


def test_a_member_reads_only_their_own_settings(app: FastAPI) -> None:
    anna, _ = client_for(app, "anna")
    assert anna.get(f"{API}/members/{MEMBER_A}/settings").status_code == 200
    other = anna.get(f"{API}/members/{MEMBER_B}/settings")
    assert other.status_code == 403
    assert "only their own" in other.json()["detail"]


def test_members_may_not_ask_for_decisions_or_all_objections(app: FastAPI) -> None:
    anna, _ = client_for(app, "anna")
    decision = anna.get(
        f"{API}/decisions", params={"member_id": MEMBER_A, "category": "a.b", "purpose": "c.d"}
    )
    assert decision.status_code == 403
    assert anna.get(f"{API}/objections").status_code == 403
    assert anna.get(f"{API}/snapshots").status_code == 403


def test_a_dpo_reads_any_members_settings(app: FastAPI) -> None:
    dpo, _ = client_for(app, "dpo")
    assert dpo.get(f"{API}/members/{MEMBER_B}/settings").status_code == 200
    assert dpo.get(f"{API}/objections").status_code == 200


# --- settings -----------------------------------------------------------------------------------


def test_settings_list_every_setting_with_its_value_and_purposes(
    client: TestClient, tokens: Tokens, app: FastAPI
) -> None:
    response = client.get(f"{API}/members/{MEMBER_A}/settings", headers=bearer(tokens.full))
    assert response.status_code == 200
    body = response.json()
    assert body["region"] == "EEA"
    assert body["policy"]["id"]
    taxonomy = app.state.portal.taxonomy
    assert [s["key"] for s in sorted(body["settings"], key=lambda s: s["key"])] == sorted(taxonomy.settings)
    genai = next(s for s in body["settings"] if s["key"] == "genai_improvement")
    assert genai["label"]["en"] and genai["label"]["de"]
    assert genai["kind"] == "toggle"
    assert genai["explicit"] is False and genai["last_change"] is None
    assert genai["value"] == genai["default"]
    assert any(p["purpose"] == "genai.training" and p["legal_basis"] for p in genai["purposes"])
    actions = [s for s in body["settings"] if s["kind"] == "action"]
    assert actions and all(s["value"] is None and s["default"] is None for s in actions)


def test_unknown_member_is_404(client: TestClient, tokens: Tokens) -> None:
    response = client.get(f"{API}/members/999999/settings", headers=bearer(tokens.full))
    assert response.status_code == 404
    assert "999999" in response.json()["detail"]


def test_bad_member_id_is_422_naming_the_field(client: TestClient, tokens: Tokens) -> None:
    for bad in ("abc", "0", str(2**64)):
        response = client.get(f"{API}/members/{bad}/settings", headers=bearer(tokens.full))
        assert response.status_code == 422, bad
        assert response.json()["detail"][0]["field"] == "path.member_id"


def test_put_records_a_receipt_in_the_ledger(
    client: TestClient, tokens: Tokens, portal_ledger: Ledger
) -> None:
    response = client.put(
        f"{API}/members/{MEMBER_A}/settings/genai_improvement",
        json={"value": False},
        headers=bearer(tokens.full),
    )
    assert response.status_code == 200, response.text
    receipt = response.json()["receipt"]
    [event] = [e for e in portal_ledger.member_events(MEMBER_A) if e.seq == receipt["seq"]]
    assert (event.key, event.value, event.hash, event.prev_hash) == (
        "genai_improvement",
        "false",
        receipt["hash"],
        receipt["prev_hash"],
    )
    assert receipt["value"] is False and receipt["member_id"] == MEMBER_A
    assert receipt["source"] == "system" and receipt["actor"].startswith("token:")
    assert receipt["effective_at"] == "2026-11-23T12:00:00Z"
    setting = next(
        s
        for s in client.get(f"{API}/members/{MEMBER_A}/settings", headers=bearer(tokens.full)).json()[
            "settings"
        ]
        if s["key"] == "genai_improvement"
    )
    assert setting["value"] is False and setting["explicit"] is True
    assert setting["last_change"] == {
        "seq": receipt["seq"],
        "effective_at": "2026-11-23T12:00:00Z",
        "source": "system",
    }


def test_retry_with_the_same_idempotency_key_returns_the_same_receipt(
    client: TestClient, tokens: Tokens, portal_ledger: Ledger
) -> None:
    url = f"{API}/members/{MEMBER_A}/settings/genai_improvement"
    headers = {**bearer(tokens.full), "Idempotency-Key": "retry-1"}
    first = client.put(url, json={"value": False}, headers=headers)
    second = client.put(url, json={"value": False}, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert len(settings_of(portal_ledger, MEMBER_A)) == 1
    conflict = client.put(url, json={"value": True}, headers=headers)
    assert conflict.status_code == 409
    assert "retry-1" in conflict.json()["detail"]
    assert len(settings_of(portal_ledger, MEMBER_A)) == 1
    # Keys are per member: another member may use the same key.
    other = client.put(
        f"{API}/members/{MEMBER_B}/settings/genai_improvement", json={"value": True}, headers=headers
    )
    assert other.status_code == 200


def test_without_idempotency_key_each_put_is_recorded(
    client: TestClient, tokens: Tokens, portal_ledger: Ledger
) -> None:
    url = f"{API}/members/{MEMBER_A}/settings/ads_connections"
    for value in (False, True, False):
        assert client.put(url, json={"value": value}, headers=bearer(tokens.full)).status_code == 200
    assert [v for _, v, _, _ in settings_of(portal_ledger, MEMBER_A)] == ["false", "true", "false"]


def test_put_bad_input(client: TestClient, tokens: Tokens) -> None:
    base = f"{API}/members/{MEMBER_A}/settings"
    unknown = client.put(f"{base}/no_such_setting", json={"value": True}, headers=bearer(tokens.full))
    assert unknown.status_code == 404
    assert "no_such_setting" in unknown.json()["detail"]
    action = client.put(f"{base}/get_copy_of_data", json={"value": True}, headers=bearer(tokens.full))
    assert action.status_code == 400
    assert action.json()["detail"].startswith("key:")
    for body in ({}, {"value": "maybe"}, {"value": True, "extra": 1}):
        bad = client.put(f"{base}/genai_improvement", json=body, headers=bearer(tokens.full))
        assert bad.status_code == 422, body
        assert bad.json()["detail"][0]["field"].startswith("body")
    no_member = client.put(
        f"{API}/members/424242/settings/genai_improvement", json={"value": True}, headers=bearer(tokens.full)
    )
    assert no_member.status_code == 404
    long_key = client.put(
        f"{base}/genai_improvement",
        json={"value": True},
        headers={**bearer(tokens.full), "Idempotency-Key": "x" * 201},
    )
    assert long_key.status_code == 422
    assert long_key.json()["detail"][0]["field"] == "header.Idempotency-Key"


def test_session_put_needs_the_csrf_header(app: FastAPI, portal_ledger: Ledger) -> None:
    anna, csrf = client_for(app, "anna")
    url = f"{API}/members/{MEMBER_A}/settings/genai_improvement"
    refused = anna.put(url, json={"value": False})
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert settings_of(portal_ledger, MEMBER_A) == []
    wrong = anna.put(url, json={"value": False}, headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403
    accepted = anna.put(url, json={"value": False}, headers={"X-CSRF-Token": csrf})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["receipt"]["source"] == "member"
    assert settings_of(portal_ledger, MEMBER_A) == [("genai_improvement", "false", "member", "member:anna")]
    other = anna.put(
        f"{API}/members/{MEMBER_B}/settings/genai_improvement",
        json={"value": False},
        headers={"X-CSRF-Token": csrf},
    )
    assert other.status_code == 403


def test_dpo_changes_are_marked_as_dpo(app: FastAPI) -> None:
    dpo, csrf = client_for(app, "dpo")
    response = dpo.put(
        f"{API}/members/{MEMBER_B}/settings/genai_improvement",
        json={"value": False},
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status_code == 200
    assert (response.json()["receipt"]["source"], response.json()["receipt"]["actor"]) == ("dpo", "dpo:dpo")


# --- decisions ----------------------------------------------------------------------------------


def test_one_decision_with_reasons(client: TestClient, tokens: Tokens) -> None:
    query: dict[str, str | int] = {
        "member_id": MEMBER_A,
        "category": "profile.skills",
        "purpose": "genai.training",
    }
    before = client.get(f"{API}/decisions", params=query, headers=bearer(tokens.full)).json()
    assert before["allowed"] is True
    assert before["policy"]["id"] and before["policy"]["version"]
    assert before["legal_basis"] == "legitimate_interest"
    assert [r["code"] for r in before["reasons"]][:2] == ["policy_in_force", "legal_basis"]
    receipt = client.put(
        f"{API}/members/{MEMBER_A}/settings/genai_improvement",
        json={"value": False},
        headers=bearer(tokens.full),
    ).json()["receipt"]
    after = client.get(f"{API}/decisions", params=query, headers=bearer(tokens.full)).json()
    assert after["allowed"] is False
    assert {"code": "setting_off", "seq": receipt["seq"]}.items() <= after["reasons"][0].items()
    assert receipt["seq"] in [e["seq"] for e in after["evidence"]]
    past = client.get(
        f"{API}/decisions", params={**query, "at": "2026-01-01T00:00:00+01:00"}, headers=bearer(tokens.full)
    ).json()
    assert past["allowed"] is True and past["at"] == "2025-12-31T23:00:00Z"


def test_decisions_fail_closed_on_unknown_keys(client: TestClient, tokens: Tokens) -> None:
    for member_id, category, purpose, code in (
        (555, "profile.skills", "genai.training", "unknown_member"),
        (MEMBER_A, "no.such", "genai.training", "unknown_category"),
        (MEMBER_A, "profile.skills", "no.such", "unknown_purpose"),
    ):
        response = client.get(
            f"{API}/decisions",
            params={"member_id": member_id, "category": category, "purpose": purpose},
            headers=bearer(tokens.full),
        )
        assert response.status_code == 200
        assert response.json()["allowed"] is False
        assert code in [r["code"] for r in response.json()["reasons"]]


def test_decision_bad_input_names_the_field(client: TestClient, tokens: Tokens) -> None:
    base: dict[str, str | int] = {
        "member_id": MEMBER_A,
        "category": "profile.skills",
        "purpose": "genai.training",
    }
    cases: list[tuple[dict[str, str | int], str]] = [
        ({**base, "at": "2025-01-01T00:00:00"}, "query.at"),
        ({**base, "at": "yesterday"}, "query.at"),
        ({**base, "at": "9999-12-31T23:59:59-01:00"}, "query.at"),
        ({**base, "member_id": "x"}, "query.member_id"),
        ({"member_id": MEMBER_A, "category": "profile.skills"}, "query.purpose"),
    ]
    for params, field in cases:
        response = client.get(f"{API}/decisions", params=params, headers=bearer(tokens.full))
        assert response.status_code == 422, params
        assert response.json()["detail"][0]["field"] == field


def test_batch_answers_in_order(client: TestClient, tokens: Tokens) -> None:
    requests: list[dict[str, str | int]] = [
        {"member_id": MEMBER_A, "category": "profile.skills", "purpose": "genai.training"},
        {"member_id": 555, "category": "profile.skills", "purpose": "genai.training"},
        {
            "member_id": MEMBER_B,
            "category": "profile.skills",
            "purpose": "genai.training",
            "at": "2026-01-01",
        },
        {"member_id": MEMBER_A, "category": "no.such", "purpose": "genai.training"},
    ]
    response = client.post(f"{API}/decisions", json={"requests": requests}, headers=bearer(tokens.full))
    assert response.status_code == 200, response.text
    decisions = response.json()["decisions"]
    assert [(d["member_id"], d["category"]) for d in decisions] == [
        (r["member_id"], r["category"]) for r in requests
    ]
    assert [d["allowed"] for d in decisions] == [True, False, True, False]
    assert decisions[2]["at"] == "2026-01-01T00:00:00Z"
    for request, decision in zip(requests, decisions, strict=True):
        single = client.get(f"{API}/decisions", params=request, headers=bearer(tokens.full)).json()
        assert decision == single


def test_batch_verdicts_are_the_decisions_without_their_evidence(client: TestClient, tokens: Tokens) -> None:
    """``detail: verdict`` answers what GET /decisions answers, less wording, seqs and evidence."""
    requests: list[dict[str, str | int]] = [
        {"member_id": member, "category": category, "purpose": purpose, **when}
        for member in (MEMBER_A, MEMBER_B, 555)
        for category in ("profile.skills", "messages.private", "no.such")
        for purpose in ("genai.training", "ads.personalization", "ads.affiliate_sharing")
        for when in ({}, {"at": "2025-11-02T23:59:59Z"}, {"at": "2026-01-01T00:00:00+01:00"})
    ]
    response = client.post(
        f"{API}/decisions", json={"requests": requests, "detail": "verdict"}, headers=bearer(tokens.full)
    )
    assert response.status_code == 200, response.text
    verdicts = response.json()["decisions"]
    assert len(verdicts) == len(requests)
    assert {v["allowed"] for v in verdicts} == {True, False}
    keep = ("allowed", "member_id", "category", "purpose", "at", "policy", "legal_basis", "region")
    for request, verdict in zip(requests, verdicts, strict=True):
        full = client.get(f"{API}/decisions", params=request, headers=bearer(tokens.full)).json()
        assert verdict == {
            **{k: full[k] for k in keep},
            "reasons": [{k: r[k] for k in ("code", "setting") if k in r} for r in full["reasons"]],
        }
    wrong = client.post(
        f"{API}/decisions", json={"requests": requests[:1], "detail": "codes"}, headers=bearer(tokens.full)
    )
    assert wrong.status_code == 422
    assert wrong.json()["detail"][0]["field"] == "body.detail"


def test_batch_limits(client: TestClient, tokens: Tokens) -> None:
    item = {"member_id": MEMBER_A, "category": "profile.skills", "purpose": "genai.training"}
    full = client.post(f"{API}/decisions", json={"requests": [item] * MAX_BATCH}, headers=bearer(tokens.full))
    assert full.status_code == 200
    assert len(full.json()["decisions"]) == MAX_BATCH
    over = client.post(
        f"{API}/decisions", json={"requests": [item] * (MAX_BATCH + 1)}, headers=bearer(tokens.full)
    )
    assert over.status_code == 422
    assert over.json()["detail"][0]["field"] == "body.requests"
    empty = client.post(f"{API}/decisions", json={"requests": []}, headers=bearer(tokens.full))
    assert empty.status_code == 422
    naive = client.post(
        f"{API}/decisions",
        json={"requests": [item, {**item, "at": "2025-01-01T10:00:00"}]},
        headers=bearer(tokens.full),
    )
    assert naive.status_code == 422
    assert naive.json()["detail"][0]["field"] == "body.requests.1.at"


# --- objections ---------------------------------------------------------------------------------


def test_member_files_an_objection_and_processing_is_restricted(app: FastAPI, tokens: Tokens) -> None:
    anna, csrf = client_for(app, "anna")
    url = f"{API}/members/{MEMBER_A}/objections"
    assert anna.post(url, json={"purposes": ["genai.training"]}).status_code == 403  # no CSRF header
    response = anna.post(
        url, json={"purposes": ["genai.training"], "grounds": "my posts"}, headers={"X-CSRF-Token": csrf}
    )
    assert response.status_code == 201, response.text
    [objection] = response.json()["objections"]
    assert objection["reference"].startswith("OBJ-")
    assert objection["status"] == "pending"
    assert objection["received_at"] == "2026-11-23T12:00:00Z"
    assert objection["due"] == "2026-12-23T12:00:00Z"
    assert objection["grounds"] == "my posts" and objection["overdue"] is False

    mine = anna.get(url).json()["objections"]
    assert [o["reference"] for o in mine] == [objection["reference"]]
    assert anna.get(f"{API}/objections/{objection['reference']}").json() == objection

    james, _ = client_for(app, "james")
    assert james.get(f"{API}/objections/{objection['reference']}").status_code == 403
    assert james.get(url).status_code == 403

    decision = TestClient(app).get(
        f"{API}/decisions",
        params={"member_id": MEMBER_A, "category": "profile.skills", "purpose": "genai.training"},
        headers=bearer(tokens.full),
    )
    assert decision.json()["allowed"] is False
    assert "objection_pending" in [r["code"] for r in decision.json()["reasons"]]


def test_direct_marketing_is_split_off_and_upheld(client: TestClient, tokens: Tokens) -> None:
    response = client.post(
        f"{API}/members/{MEMBER_B}/objections",
        json={"purposes": ["genai.training", "ads.personalization"]},
        headers=bearer(tokens.full),
    )
    assert response.status_code == 201
    objections = response.json()["objections"]
    assert [(o["purposes"], o["status"], o["automatic"]) for o in objections] == [
        (["genai.training"], "pending", False),
        (["ads.personalization"], "upheld", True),
    ]


def test_objection_retry_and_bad_input(client: TestClient, tokens: Tokens) -> None:
    url = f"{API}/members/{MEMBER_A}/objections"
    headers = {**bearer(tokens.full), "Idempotency-Key": "obj-1"}
    first = client.post(url, json={"purposes": ["genai.training"]}, headers=headers)
    again = client.post(url, json={"purposes": ["genai.training"]}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert client.post(url, json={"purposes": ["ml.non_generative"]}, headers=headers).status_code == 409
    unknown = client.post(url, json={"purposes": ["no.such"]}, headers=bearer(tokens.full))
    assert unknown.status_code == 400
    assert unknown.json()["detail"].startswith("purposes:")
    empty = client.post(url, json={"purposes": []}, headers=bearer(tokens.full))
    assert empty.status_code == 422
    assert empty.json()["detail"][0]["field"] == "body.purposes"
    nobody = client.post(
        f"{API}/members/4242/objections", json={"purposes": ["genai.training"]}, headers=bearer(tokens.full)
    )
    assert nobody.status_code == 404
    missing = client.get(f"{API}/objections/OBJ-0000000000", headers=bearer(tokens.full))
    assert missing.status_code == 404


def test_objection_list_and_overdue(client: TestClient, tokens: Tokens, clock: FixedClock) -> None:
    filed = client.post(
        f"{API}/members/{MEMBER_A}/objections",
        json={"purposes": ["genai.training"]},
        headers=bearer(tokens.full),
    ).json()["objections"][0]
    listed = client.get(f"{API}/objections", headers=bearer(tokens.full)).json()["objections"]
    assert [o["reference"] for o in listed] == [filed["reference"]]
    assert (
        client.get(f"{API}/objections?overdue=true", headers=bearer(tokens.full)).json()["objections"] == []
    )
    clock.now = NOW + timedelta(days=40)
    overdue = client.get(f"{API}/objections", params={"overdue": True}, headers=bearer(tokens.full)).json()
    assert [(o["reference"], o["overdue"]) for o in overdue["objections"]] == [(filed["reference"], True)]


# --- snapshots and lineage ----------------------------------------------------------------------


def _register_snapshot(ledger: Ledger, folder: Path) -> SnapshotEntry:
    folder.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "member_id": pa.array([MEMBER_A, MEMBER_A], pa.int64()),
                "category": ["posts.content", "profile.skills"],
                "records": pa.array([3, 1], pa.int64()),
            }
        ),
        folder / "members.parquet",
    )
    entry = SnapshotEntry(
        snapshot_id="genai.training-20260101T000000Z-abcdef012345",
        kind="training",
        purpose="genai.training",
        as_of=at("2026-01-01"),
        watermark=4,
        policy_ref="linkedin-2025-11@2",
        engine="duckdb",
        records=4,
        members=1,
        manifest_sha256="0" * 64,
        path=folder,
        registered_at=at("2026-01-02"),
    )
    Registry(ledger).register(entry, publish=lambda _conn: None)
    return entry


def test_snapshots_and_member_lineage(
    client: TestClient, tokens: Tokens, portal_ledger: Ledger, tmp_path: Path, app: FastAPI
) -> None:
    assert client.get(f"{API}/snapshots", headers=bearer(tokens.full)).json() == {"snapshots": []}
    entry = _register_snapshot(portal_ledger, tmp_path / "snap")
    [listed] = client.get(f"{API}/snapshots", headers=bearer(tokens.full)).json()["snapshots"]
    assert listed["snapshot_id"] == entry.snapshot_id
    assert listed["as_of"] == "2026-01-01T00:00:00Z" and "path" not in listed
    one = client.get(f"{API}/snapshots/{entry.snapshot_id}", headers=bearer(tokens.full))
    assert one.json() == listed
    assert client.get(f"{API}/snapshots?purpose=ads.offsite", headers=bearer(tokens.full)).json() == {
        "snapshots": []
    }
    assert client.get(f"{API}/snapshots/nope", headers=bearer(tokens.full)).status_code == 404

    anna, _ = client_for(app, "anna")
    lineage = anna.get(f"{API}/members/{MEMBER_A}/lineage").json()
    assert [(s["snapshot_id"], s["records"], s["categories"]) for s in lineage["snapshots"]] == [
        (entry.snapshot_id, 4, {"posts.content": 3, "profile.skills": 1})
    ]
    assert anna.get(f"{API}/members/{MEMBER_B}/lineage").status_code == 403
    james = client.get(f"{API}/members/{MEMBER_B}/lineage", headers=bearer(tokens.full)).json()
    assert james["snapshots"] == []
    assert client.get(f"{API}/members/4242/lineage", headers=bearer(tokens.full)).status_code == 404


# --- the OpenAPI document -----------------------------------------------------------------------


def test_openapi_documents_every_route_with_models_and_errors(client: TestClient) -> None:
    document = client.get(f"{API}/openapi.json").json()
    operations = [
        (path, method, op)
        for path, item in document["paths"].items()
        if path.startswith(API)
        for method, op in item.items()
    ]
    assert len(operations) == 14
    for path, method, op in operations:
        ok = op["responses"].get("200") or op["responses"].get("201")
        assert ok is not None, (path, method)
        schema = ok["content"]["application/json"]["schema"]
        assert all("$ref" in one for one in schema.get("anyOf", [schema])), (path, method)
        for status in ("401", "403", "422"):
            assert status in op["responses"], (path, method, status)
        assert op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "ValidationErrorPublic"
        )
    schemas = document["components"]["schemas"]
    for name in (
        "SettingPublic",
        "Receipt",
        "DecisionPublic",
        "DecisionBatch",
        "VerdictBatch",
        "ObjectionPublic",
        "MemberProofPublic",
    ):
        assert name in schemas
    assert schemas["SettingChange"]["properties"]["value"]["description"]
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
