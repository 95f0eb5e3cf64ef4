"""The member's and the DPO's journeys in a real browser (Chromium), and accessibility with axe-core."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from playwright.sync_api import Page, expect

from consentgate.decisions import DecisionEngine
from consentgate.policy import load_timeline
from consentgate.snapshots.build import BuildRequest, build_snapshot
from consentgate.taxonomy import load_taxonomy
from consentgate.web.member import settings_view
from consentgate.web.state import Portal, PortalConfig
from tests.browser.conftest import LivePortal, axe_violations, log_in, log_out, screenshot


def _portal(live: LivePortal) -> Portal:
    return Portal(PortalConfig(db="(check)"), live.ledger)


def test_member_switches_gen_ai_off_and_sees_receipt_and_new_state(
    live_portal: LivePortal, page: Page
) -> None:
    log_in(page, live_portal.url, "anna")
    # The first page after login explains the policy change and chooses nothing for the member.
    expect(page.locator("h1")).to_have_text("What has changed")
    assert page.locator("input[type=radio]:checked, input[type=checkbox]:checked").count() == 0
    page.click("form[action='/notice'] button")
    expect(page.locator("h1")).to_have_text("Your settings")

    genai = page.locator("article[data-setting=genai_improvement]")
    expect(genai.locator(".state")).to_contain_text("On: used for")
    genai.locator("input[value=off]").check()
    genai.locator("button[type=submit]").click()
    expect(page.locator("#receipt")).to_contain_text("Data for Generative AI Improvement: Off")
    expect(page.locator("#receipt")).to_contain_text("sha256")
    genai = page.locator("article[data-setting=genai_improvement]")
    expect(genai.locator(".state")).to_contain_text("Off: not used for")
    expect(genai).to_contain_text("by you")
    screenshot(page, "settings")

    state = _portal(live_portal)
    row = settings_view(state, 1001, state.now()).row("genai_improvement")
    assert row.value is False and row.explicit is not None and row.explicit.source == "member"

    page.select_option("#language-select", "de")
    page.click("form.language button")
    expect(page.locator("article[data-setting=genai_improvement] h3")).to_have_text(
        "Daten zur Verbesserung generativer KI"
    )
    expect(page.locator("html")).to_have_attribute("lang", "de")


def test_one_action_switches_every_use_off_after_confirmation(live_portal: LivePortal, page: Page) -> None:
    log_in(page, live_portal.url, "james")
    page.click("form[action='/notice'] button")
    page.click("a[href='/settings/none']")
    listed = page.locator("ul.plan li")
    assert listed.count() > 3, "the confirmation lists what will change"
    names = listed.all_inner_texts()
    planned = len(names)
    assert any("Share data with affiliates and partners" in n for n in names)
    page.click("form[action='/settings/none'] button[type=submit]")
    expect(page.locator("#receipt")).to_be_visible()
    assert page.locator("#receipt tbody tr").count() == planned
    portal = _portal(live_portal)
    view = settings_view(portal, 1004, portal.now())
    assert not [r.key for r in view.rows() if r.controls_use and r.value]
    expect(page.locator(".summary")).to_contain_text("Nothing to switch off")


def test_objection_upheld_by_dpo_is_visible_to_the_member(live_portal: LivePortal, page: Page) -> None:
    log_in(page, live_portal.url, "anna")
    page.goto(f"{live_portal.url}/objections")
    page.check("input[name=purposes][value='ml.non_generative']")
    page.fill("#grounds", "I do not want my profile used to train models.")
    page.click("form.objection-form button[type=submit]")
    receipt = page.locator("#receipt")
    expect(receipt).to_contain_text("answer due by")
    reference = re.search(r"OBJ-[0-9A-F]{10}", receipt.inner_text())
    assert reference
    log_out(page)

    log_in(page, live_portal.url, "dpo")
    expect(page.locator("body")).to_contain_text(reference.group(0))
    screenshot(page, "console")
    page.goto(f"{live_portal.url}/console/objections/{reference.group(0)}")
    uphold = page.locator("form[action$='/decide']").filter(has=page.locator("input[value=uphold]"))
    uphold.locator("textarea, input[name=reason]").first.fill(
        "Upheld: no compelling grounds outweigh the member's."
    )
    uphold.locator("button[type=submit]").click()
    expect(page.locator("body")).to_contain_text("upheld")
    log_out(page)

    log_in(page, live_portal.url, "anna")
    page.goto(f"{live_portal.url}/objections/{reference.group(0)}")
    expect(page.locator(".status")).to_contain_text("upheld")
    expect(page.locator(".reasons")).to_contain_text("no compelling grounds")


def test_member_pages_have_no_serious_accessibility_violations(live_portal: LivePortal, page: Page) -> None:
    page.goto(f"{live_portal.url}/login")
    assert axe_violations(page) == []
    log_in(page, live_portal.url, "anna")
    assert axe_violations(page) == [], "notice page"
    page.click("form[action='/notice'] button")
    for path in ("/settings", "/settings/none", "/data", "/objections"):
        page.goto(f"{live_portal.url}{path}")
        assert axe_violations(page) == [], path
    page.check("input[name=purposes][value='ml.non_generative']")
    page.click("form.objection-form button[type=submit]")
    assert axe_violations(page) == [], "objection receipt"


def test_member_reads_the_proof_of_their_data_in_a_snapshot(
    live_portal: LivePortal, page: Page, tmp_path: Path
) -> None:
    """From "Where my data went" to the proof: the member's records, why, the checked ledger entries."""
    records = tmp_path / "net" / "records"
    records.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "record_id": pa.array([1, 2, 3], pa.int64()),
                "member_id": pa.array([1001, 1001, 1004], pa.int64()),
                "category": ["profile.skills", "messages.private", "profile.skills"],
                "created_at": pa.array([datetime(2024, 6, 1, tzinfo=UTC)] * 3, pa.timestamp("us", tz="UTC")),
            }
        ),
        records / "part-0.parquet",
    )
    engine = DecisionEngine(load_taxonomy(), load_timeline([], include_builtin=True))
    request = BuildRequest(
        data=tmp_path / "net",
        purpose="genai.training",
        as_of=datetime(2025, 11, 4, tzinfo=UTC),
        out=tmp_path / "s",
    )
    built = build_snapshot(request, ledger=live_portal.ledger, engine=engine)
    log_in(page, live_portal.url, "anna")
    page.click("form[action='/notice'] button")
    page.goto(f"{live_portal.url}/data")
    page.click(f"a[href='/data/snapshots/{built.snapshot_id}']")
    expect(page.locator("h1")).to_have_text("Your data in this training snapshot")
    expect(page.locator("[data-proof=ok]")).to_be_visible()
    expect(page.locator("main")).to_contain_text("profile.skills")
    assert axe_violations(page) == [], "proof page"
    screenshot(page, "proof")
