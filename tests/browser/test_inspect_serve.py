"""``inspect serve`` in a real browser: choose a fixture ZIP, read the report in German, get the letter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.staticfiles import StaticFiles
from playwright.sync_api import Page, expect

from consentgate.decisions.engine import DecisionEngine
from consentgate.inspect.serve import create_inspect_app
from consentgate.web.i18n import load_translations
from tests.browser.conftest import AXE, axe_violations, screenshot, serve_in_thread
from tests.inspect import archives


@pytest.fixture
def inspector(engine: DecisionEngine) -> Iterator[str]:
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing at {AXE}: run scripts/test (it installs axe-core from npm)")
    app = create_inspect_app(engine)
    app.mount("/test-assets", StaticFiles(directory=str(AXE.parent)), name="test-assets")
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture
def german_page(browser: object) -> Iterator[Page]:
    context = browser.new_context(  # type: ignore[attr-defined]
        locale="de-DE", viewport={"width": 1280, "height": 900}, accept_downloads=True
    )
    opened = context.new_page()
    yield opened
    context.close()


def test_a_member_reads_their_archive_in_german_and_downloads_the_letter(
    inspector: str, german_page: Page, tmp_path: Path
) -> None:
    page = german_page
    de = load_translations().gettext("de")
    page.goto(f"{inspector}/")
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.locator("h1")).to_have_text(de("Read your data archive"))
    assert axe_violations(page) == []

    page.set_input_files("#archive", str(archives.basic_export(tmp_path)))
    page.select_option("#country", "DE")
    page.fill("#at", "2025-11-04")
    page.select_option("#lang", "de")
    page.click("form.inspect button[type=submit]")
    page.wait_for_load_state()

    expect(page.locator("h1")).to_have_text(de("What your data archive shows"))
    genai = page.locator("table.summary tr[data-purpose='genai.training']")
    expect(genai.locator("th")).to_have_text(de("Training content-generating AI"))
    expect(genai.locator("td[data-treatment=used]")).to_contain_text(de("{rows} rows").format(rows="47"))
    expect(page.locator("figure svg[role=img]")).to_be_visible()
    messages = page.locator(
        "section[data-purpose='genai.training']"
        " tr[data-path='Basic_LinkedInDataExport_01-02-2026/messages.csv']"
    )
    expect(messages).to_have_attribute("data-treatment", "never_used")
    assert axe_violations(page) == []
    screenshot(page, "inspect-report-de")

    with page.expect_download() as download_info:
        page.click("a[href$='/objection.txt']")
    download = download_info.value
    assert download.suggested_filename == "objection.txt"
    saved = tmp_path / "objection.txt"
    download.save_as(saved)
    letter = saved.read_text("utf-8")
    assert "Widerspruch nach Art. 21 Abs. 1 DSGVO" in letter and "Anna Becker" in letter
    assert "LinkedIn Ireland Unlimited Company" in letter

    with page.expect_download() as checklist_info:
        page.click("a[href$='/checklist.md']")
    checklist = tmp_path / "checklist.md"
    checklist_info.value.save_as(checklist)
    assert "Daten zur Verbesserung generativer KI" in checklist.read_text("utf-8")


def test_the_page_in_english_and_a_refused_archive(inspector: str, page: Page, tmp_path: Path) -> None:
    page.goto(f"{inspector}/?lang=en")
    expect(page.locator("h1")).to_have_text("Read your data archive")
    bad = tmp_path / "not-an-export.zip"
    bad.write_text("hello")
    page.set_input_files("#archive", str(bad))
    page.select_option("#country", "FR")
    page.click("form.inspect button[type=submit]")
    page.wait_for_load_state()
    expect(page.locator("#error")).to_contain_text("not-an-export.zip: not a ZIP file")
    assert axe_violations(page) == []

    page.set_input_files("#archive", str(archives.complete_export(tmp_path)))
    page.select_option("#country", "FR")
    page.select_option("#lang", "en")
    page.click("form.inspect button[type=submit]")
    page.wait_for_load_state()
    expect(page.locator("h1")).to_have_text("What your data archive shows")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    screenshot(page, "inspect-report-en")
