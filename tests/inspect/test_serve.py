"""``inspect serve``: the local page's answers, headers and guards (the browser journey: tests/browser)."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from consentgate.decisions.engine import DecisionEngine
from consentgate.inspect.serve import create_inspect_app
from consentgate.web.app import CSP
from tests.helpers import cli_env, free_port, running
from tests.inspect import archives

BASE = "http://127.0.0.1:8765"


@pytest.fixture
def client(engine: DecisionEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with TestClient(create_inspect_app(engine), base_url=BASE) as c:
        yield c


def token_of(html: str) -> str:
    found = re.search(r'name="token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def post(client: TestClient, archive: Path, **fields: str) -> Any:
    token = fields.pop("token", None) or token_of(client.get("/").text)
    return client.post(
        "/report",
        data={"token": token, **fields},
        files=[("archive", (archive.name, archive.read_bytes(), "application/zip"))],
    )


def test_the_report_the_downloads_and_nothing_left_on_disk(client: TestClient, tmp_path: Path) -> None:
    basic = archives.basic_export(tmp_path)
    answer = post(client, basic, country="DE", at="2025-11-04", lang="de")
    assert answer.status_code == 200 and answer.headers["content-language"] == "de"
    assert '<html lang="de">' in answer.text and 'href="/static/inspect.css"' in answer.text
    assert "<style>" not in answer.text  # the CSP allows no inline style
    assert 'data-path="Basic_LinkedInDataExport_01-02-2026/Profile.csv"' in answer.text
    assert list((tmp_path / "tmp").iterdir()) == [], "the upload's temporary folder is removed"
    links = dict(re.findall(r'href="(/download/[^/"]+/([a-z.]+))"', answer.text))
    assert set(links.values()) >= {"checklist.md", "objection.txt", "objection.html"}
    letter = client.get(next(k for k, v in links.items() if v == "objection.txt"))
    assert letter.headers["content-disposition"] == 'attachment; filename="objection.txt"'
    assert "Widerspruch" in letter.text and "Anna Becker" in letter.text
    assert client.get("/download/not-a-token/objection.txt").status_code == 404


def test_security_headers_on_every_answer(client: TestClient, tmp_path: Path) -> None:
    answers: list[Any] = [
        client.get("/"),
        client.get("/static/inspect.css"),
        post(client, archives.basic_export(tmp_path), country="DE"),
        client.post("/report", data={"token": "x"}),
        client.get("/nowhere"),
    ]
    for answer in answers:
        assert answer.headers["content-security-policy"] == CSP, answer.request.url
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"


def test_another_host_name_is_refused(client: TestClient) -> None:
    """DNS rebinding: a page of evil.example that resolves to 127.0.0.1 gets nothing."""
    answer = client.get("/", headers={"host": "evil.example:8765"})
    assert answer.status_code == 421
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200


def test_a_post_without_this_process_s_form_token_is_refused(client: TestClient, tmp_path: Path) -> None:
    answer = post(client, archives.basic_export(tmp_path), token="forged", country="DE")
    assert answer.status_code == 403 and 'role="alert"' in answer.text
    assert "/download/" not in answer.text


def test_bad_archives_answer_with_the_form_and_one_sentence(client: TestClient, tmp_path: Path) -> None:
    bad = tmp_path / "my-export.zip"
    bad.write_text("hello")
    answer = post(client, bad, country="DE")
    assert answer.status_code == 400
    alert = re.search(r'role="alert"[^>]*><p>([^<]+)</p>', answer.text)
    assert alert is not None and alert.group(1).startswith("my-export.zip: not a ZIP file")
    assert "consentgate-inspect-" not in answer.text and "Traceback" not in answer.text
    assert 'name="archive"' in answer.text  # the form, to try again
    missing = client.post("/report", data={"token": token_of(client.get("/").text)})
    assert missing.status_code == 422 and 'role="alert"' in missing.text
    bad_date = post(client, archives.basic_export(tmp_path), country="DE", at="soon")
    assert bad_date.status_code == 400
    assert "date: &#39;soon&#39; is not an ISO 8601 timestamp" in bad_date.text


def test_the_page_follows_the_browser_language(client: TestClient) -> None:
    german = client.get("/", headers={"accept-language": "de-DE,de;q=0.9"})
    assert german.headers["content-language"] == "de" and '<html lang="de">' in german.text
    assert 'value="DE" selected' not in german.text  # nothing chosen for the member
    assert client.get("/?lang=en", headers={"accept-language": "de"}).headers["content-language"] == "en"


def test_the_command_listens_on_loopback_only(tmp_path: Path) -> None:
    port = free_port()
    with running(["inspect", "serve", "--port", str(port)], cwd=tmp_path, ready=f"http://127.0.0.1:{port}/"):
        answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert answer.status_code == 200 and 'name="archive"' in answer.text
        assert "server" not in answer.headers
        listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
        local = {line.split()[1] for line in listening if line.split()[3] == "0A"}  # state LISTEN
        assert f"0100007F:{port:04X}" in local and f"00000000:{port:04X}" not in local
    helped = subprocess.run(
        [sys.executable, "-m", "consentgate", "inspect", "serve", "--help"],
        capture_output=True,
        text=True,
        env=cli_env(),
        check=True,
    )
    assert "--host" not in helped.stdout
