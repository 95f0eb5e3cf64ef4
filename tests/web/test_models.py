"""Trained models on the web: registering them (refused in debt, overrides by a DPO only), and what
members and the DPO see of them (trained before the opt-out, after it under an override, or allowed).

Real snapshots on real ledgers (SQLite and PostgreSQL): member A (Germany) and member B (US) are in a
genai.training snapshot as of 2025-11-04; models are trained on it before and after A's opt-out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from consentgate.decisions.engine import DecisionEngine
from consentgate.ledger.store import Ledger
from consentgate.snapshots.member_models import ModelStatus, member_models
from consentgate.snapshots.registry import Registry
from consentgate.snapshots.training_runs import register_trained_model
from consentgate.web.accounts import Scope
from consentgate.web.schemas import MemberLineagePublic, ModelRegistrationPublic, ModelsPublic
from tests.conftest import at, set_setting
from tests.web.conftest import MEMBER_A, MEMBER_B, Tokens, build_genai_snapshot, client_for

API = "/api/v1"
EARLY = "2025-11-05T00:00:00Z"
"""Before anyone opted out."""
A_OPTS_OUT = "2025-11-20T00:00:00Z"
LATE = "2025-12-01T00:00:00Z"
B_OPTS_OUT = "2025-11-25T00:00:00Z"
"""Member B's opt-out: recorded after the late model's registration, effective before its training."""
REASON = "legal hold: the model is evidence in case 12 & must not change"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def snapshot(
    portal_ledger: Ledger, engine: DecisionEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A real genai.training snapshot holding members A and B (both allowed at its as-of)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the event mirror of a PostgreSQL ledger
    result = build_genai_snapshot(portal_ledger, engine, tmp_path, (MEMBER_A, MEMBER_B))
    assert result.manifest["counts"]["members_included"] == 2, result.manifest["counts"]
    return result.snapshot_id


@dataclass(frozen=True)
class Trained:
    snapshot_id: str


@pytest.fixture
def trained(portal_ledger: Ledger, engine: DecisionEngine, snapshot: str) -> Trained:
    """``early`` trained before A's opt-out; ``late`` after it under a DPO's override; B opts out later.

    B's opt-out is recorded after ``late`` was registered but back-dated before its training, so no
    override covers B: the member sees that honestly as trained after the opt-out, without one.
    """
    register_trained_model(portal_ledger, engine, "early", [snapshot], trained_at=at(EARLY), actor="test")
    set_setting(portal_ledger, MEMBER_A, "genai_improvement", False, A_OPTS_OUT)
    late = register_trained_model(
        portal_ledger,
        engine,
        "late",
        [snapshot],
        trained_at=at(LATE),
        accept_debt=REASON,
        actor="dpo:dpo",
    )
    assert late.model.override is not None and late.model.override.members == 1
    return Trained(snapshot)


def _row(html: str, model: str) -> str:
    return html.split(f'data-model="{model}"')[1].split("</tr>")[0]


# --- registering over the API ---------------------------------------------------------------------


def test_a_token_registers_a_model_and_the_same_registration_again_is_200(
    client: TestClient, tokens: Tokens, snapshot: str
) -> None:
    writer = bearer(tokens.by_scope[Scope.models_write])
    body = {"name": "early", "snapshots": [snapshot], "trained_at": EARLY, "note": "first run"}
    created = client.post(f"{API}/models", json=body, headers=writer)
    assert created.status_code == 201, created.text
    registration = ModelRegistrationPublic.model_validate(created.json())
    assert registration.created is True
    assert registration.model.trained_at == at(EARLY) and registration.model.override is None
    assert registration.model.note == "first run" and registration.model.snapshots == [snapshot]
    again = client.post(f"{API}/models", json=body, headers=writer)
    assert again.status_code == 200
    assert again.json() == {**created.json(), "created": False}
    listed = client.get(f"{API}/models", headers=bearer(tokens.by_scope[Scope.lineage_read]))
    assert ModelsPublic.model_validate(listed.json()).models == [registration.model]


def test_registration_after_an_opt_out_is_409_with_the_count_and_only_a_dpo_may_override(
    app: FastAPI, client: TestClient, tokens: Tokens, portal_ledger: Ledger, snapshot: str
) -> None:
    set_setting(portal_ledger, MEMBER_A, "genai_improvement", False, A_OPTS_OUT)
    body = {"name": "late", "snapshots": [snapshot], "trained_at": LATE}
    refused = client.post(f"{API}/models", json=body, headers=bearer(tokens.full))
    assert refused.status_code == 409, refused.text
    assert refused.json()["count"] == 1
    detail = refused.json()["detail"]
    assert "1 members" in detail and f"member {MEMBER_A} (setting_off since 2025-11-20" in detail
    assert f"consentgate snapshot refresh {snapshot}" in detail
    assert Registry(portal_ledger).get_model("late") is None

    # A token may not decide the exception, even with every scope.
    forced = {**body, "accept_debt": REASON}
    by_token = client.post(f"{API}/models", json=forced, headers=bearer(tokens.full))
    assert by_token.status_code == 403 and "DPO role" in by_token.json()["detail"]
    assert Registry(portal_ledger).get_model("late") is None

    dpo, csrf = client_for(app, "dpo")
    assert dpo.post(f"{API}/models", json=forced).status_code == 403  # a session needs its CSRF token
    by_dpo = dpo.post(f"{API}/models", json=forced, headers={"X-CSRF-Token": csrf})
    assert by_dpo.status_code == 201, by_dpo.text
    assert by_dpo.json()["model"]["override"] == {"reason": REASON, "by": "dpo:dpo", "members": 1}
    [(name, member)] = Registry(portal_ledger).overridden(model="late")
    assert (name, member.member_id, member.snapshot_id, member.reason) == (
        "late",
        MEMBER_A,
        snapshot,
        "setting_off",
    )
    listed = dpo.get(f"{API}/models").json()["models"]
    assert [(m["name"], m["trained_at"], m["override"]["by"]) for m in listed] == [
        ("late", "2025-12-01T00:00:00Z", "dpo:dpo")
    ]


def test_registration_input_errors(client: TestClient, tokens: Tokens, snapshot: str) -> None:
    headers = bearer(tokens.by_scope[Scope.models_write])

    def post(**body: object) -> tuple[int, object]:
        response = client.post(
            f"{API}/models", json={"name": "m", "snapshots": [snapshot], **body}, headers=headers
        )
        return response.status_code, response.json()["detail"]

    status, detail = post(snapshots=["genai.training-nope"])
    assert status == 404 and "genai.training-nope" in str(detail)
    status, detail = post(trained_at="2030-01-01T00:00:00Z")
    assert status == 400 and "in the future" in str(detail)
    status, detail = post(trained_at="2025-01-01T00:00:00Z")
    assert status == 400 and "before snapshot" in str(detail)
    status, detail = post(trained_at="2025-12-01T00:00:00")
    assert status == 422 and "offset" in str(detail)
    assert post(snapshots=[])[0] == 422
    assert post(name="has a space")[0] == 422
    # A blank reason is no reason; checked before the role, so a DPO learns the same.
    assert post(accept_debt="   ")[0] == 422


# --- what the member sees -------------------------------------------------------------------------


def test_member_models_gives_each_state(
    portal_ledger: Ledger, engine: DecisionEngine, trained: Trained
) -> None:
    a = {m.model: m for m in member_models(portal_ledger, engine, MEMBER_A)}
    assert a["early"].status is ModelStatus.before_optout
    assert a["early"].departure is not None and a["early"].departure.since == at(A_OPTS_OUT)
    assert a["early"].departure.setting == "genai_improvement"
    assert a["late"].status is ModelStatus.after_optout_override
    assert a["late"].override_reason == REASON and a["late"].trained_at == at(LATE)
    b = {m.model: m.status for m in member_models(portal_ledger, engine, MEMBER_B)}
    assert b == {"early": ModelStatus.allowed, "late": ModelStatus.allowed}
    set_setting(portal_ledger, MEMBER_B, "genai_improvement", False, B_OPTS_OUT)
    b = {m.model: m.status for m in member_models(portal_ledger, engine, MEMBER_B)}
    assert b == {"early": ModelStatus.before_optout, "late": ModelStatus.after_optout}
    # Opting in again: the data is allowed now, but the late model was trained while it was not.
    set_setting(portal_ledger, MEMBER_B, "genai_improvement", True, "2026-01-01T00:00:00Z")
    b = {m.model: m.status for m in member_models(portal_ledger, engine, MEMBER_B)}
    assert b == {"early": ModelStatus.allowed, "late": ModelStatus.after_optout}


def test_where_my_data_went_shows_each_model_before_or_after_the_opt_out(
    app: FastAPI, portal_ledger: Ledger, trained: Trained
) -> None:
    anna, _ = client_for(app, "anna")
    page = anna.get("/data").text
    early = _row(page, "early")
    assert 'data-status="before_optout"' in early and "Trained before your opt-out" in early
    assert "“Data for Generative AI Improvement” was switched off." in early
    assert "In effect since Nov 20, 2025" in early and "Nov 5, 2025" in early
    assert "Models trained after your opt-out leave your data out." in early
    late = _row(page, "late")
    assert 'data-status="after_optout_override"' in late
    assert "Trained after your opt-out, by a recorded exception" in late
    assert "legal hold: the model is evidence in case 12 &amp; must not change" in late
    assert "Dec 1, 2025" in late and "GDPR Art. 77" in late
    german = anna.get("/data", headers={"accept-language": "de"}).text
    assert "Vor Ihrem Opt-out trainiert" in _row(german, "early")
    assert "Wirksam seit 20.11.2025" in _row(german, "early")
    assert "Nach Ihrem Opt-out trainiert, als dokumentierte Ausnahme" in _row(german, "late")

    james, _ = client_for(app, "james")
    assert 'data-status="allowed"' in _row(james.get("/data").text, "late")
    set_setting(portal_ledger, MEMBER_B, "genai_improvement", False, B_OPTS_OUT)
    page = james.get("/data").text
    assert 'data-status="before_optout"' in _row(page, "early")
    late = _row(page, "late")
    assert 'data-status="after_optout"' in late and "with no recorded exception" in late
    assert "legal hold" not in page  # another member's override is not B's


def test_the_lineage_api_gives_the_models_with_their_state(
    app: FastAPI, client: TestClient, tokens: Tokens, trained: Trained
) -> None:
    anna, _ = client_for(app, "anna")
    body = anna.get(f"{API}/members/{MEMBER_A}/lineage").json()
    MemberLineagePublic.model_validate(body)
    assert body["models"] == ["early", "late"]
    assert [
        (m["model"], m["trained_at"], m["status"], m["since"], m["setting"], m["override_reason"])
        for m in body["trained_models"]
    ] == [
        ("early", EARLY, "before_optout", A_OPTS_OUT, "genai_improvement", None),
        ("late", LATE, "after_optout_override", A_OPTS_OUT, "genai_improvement", REASON),
    ]
    james = client.get(
        f"{API}/members/{MEMBER_B}/lineage", headers=bearer(tokens.by_scope[Scope.lineage_read])
    ).json()
    assert [(m["model"], m["status"], m["since"]) for m in james["trained_models"]] == [
        ("early", "allowed", None),
        ("late", "allowed", None),
    ]


# --- what the DPO sees ----------------------------------------------------------------------------


def test_the_console_shows_training_times_and_the_override(app: FastAPI, trained: Trained) -> None:
    dpo, _ = client_for(app, "dpo")
    page = dpo.get("/console").text
    overrides = page.split('data-overrides="1"')[1].split("</section>")[0]
    assert 'data-override="late"' in overrides and "dpo:dpo" in overrides
    assert "legal hold: the model is evidence in case 12 &amp; must not change" in overrides
    assert "1 members covered" in overrides and 'href="/console/models/late/debt"' in overrides
    late = _row(page, "late")
    assert "Dec 1, 2025" in late and "<strong>Override</strong>" in late and "legal hold" in late
    early = _row(page, "early")
    assert "Nov 5, 2025" in early and "legal hold" not in early

    debt = dpo.get("/console/models/late/debt").text
    override = debt.split('data-override="late"')[1].split("</section>")[0]
    assert "legal hold" in override and "dpo:dpo" in override
    member = override.split(f'data-overridden="{MEMBER_A}"')[1].split("</tr>")[0]
    assert trained.snapshot_id in member and "setting_off" in member and "Nov 20, 2025" in member
    assert 'data-overridden="' + str(MEMBER_B) not in override
    assert "data-override=" not in dpo.get("/console/models/early/debt").text
