"""English and German: the catalogue covers every text of the pages, and the language is chosen right."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from fastapi.testclient import TestClient

from consentgate.taxonomy import load_taxonomy
from consentgate.web.i18n import load_translations, negotiate
from consentgate.web.templating import RECIPIENTS
from tests.web.conftest import login

_MSGID = re.compile(r"""_\(\s*(?:"([^"]+)"|'([^']+)')\s*\)""")


def _template_msgids() -> set[str]:
    found: set[str] = set()
    root = resources.files("consentgate.web") / "templates"
    paths = [p for p in root.iterdir() if p.name.endswith(".html")]
    console = root / "console"
    if console.is_dir():
        paths += [p for p in console.iterdir() if p.name.endswith(".html")]
    for path in paths:
        for double, single in _MSGID.findall(path.read_text("utf-8")):
            found.add(double or single)
    return found


def test_every_page_text_has_a_german_translation() -> None:
    """A text marked for translation in a template, or shown from the taxonomy, is in the DE catalogue."""
    taxonomy = load_taxonomy()
    wanted = _template_msgids()
    wanted |= {s.section for s in taxonomy.settings.values()}
    wanted |= {p.name for p in taxonomy.purposes.values()}
    wanted |= set(RECIPIENTS.values()) | {"pending", "upheld", "rejected"}
    assert len(wanted) > 100
    assert load_translations().missing("de", wanted) == set()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("en-US,en;q=0.9,de;q=0.5", "en"),
        ("fr-FR,fr;q=0.9,de;q=0.7", "de"),
        ("fr-FR", "en"),
        ("de;q=0", "en"),
        ("", "en"),
        ("garbage;;;q=x", "en"),
    ],
)
def test_accept_language_negotiation(header: str, expected: str) -> None:
    assert negotiate(header) == expected


def test_language_follows_the_browser_until_the_member_chooses(client: TestClient) -> None:
    german = {"accept-language": "de-DE,de;q=0.9"}
    assert "Anmelden" in client.get("/login", headers=german).text
    csrf = login(client, "anna")
    page = client.get("/notice", headers=german)
    assert page.headers["content-language"] == "de" and "Was sich geändert hat" in page.text
    client.post("/language", data={"csrf_token": csrf, "language": "en", "next": "/notice"})
    page = client.get("/notice", headers=german)
    assert page.headers["content-language"] == "en" and "What has changed" in page.text
