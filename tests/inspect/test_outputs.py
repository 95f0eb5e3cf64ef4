"""``inspect --out``: the report, checklist and letter in English and German, written whole or not at all."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import date
from pathlib import Path

import pytest

from consentgate.decisions.engine import DecisionEngine
from consentgate.inspect.inspector import inspect_archive, read_settings
from consentgate.inspect.render import OUTPUT_FILES, Renderer, write_outputs
from consentgate.web.i18n import load_translations
from tests.conftest import at
from tests.helpers import cg, one_error_line, refuse_network
from tests.inspect import archives
from tests.inspect.msgids import inspector_msgids

T = at("2025-11-04T00:00:00Z")
WRITTEN_ON = date(2026, 1, 20)


def renderer(engine: DecisionEngine, tmp_path: Path, language: str, **options: object) -> Renderer:
    result = inspect_archive(
        [archives.basic_export(tmp_path)], engine=engine, at=T, country=str(options.pop("country", "DE"))
    )
    return Renderer(result, engine, language=language, today=WRITTEN_ON, **options)  # type: ignore[arg-type]


def test_every_text_of_the_inspector_has_a_german_translation() -> None:
    wanted = inspector_msgids()
    assert len(wanted) > 150
    assert load_translations().missing("de", wanted) == set()


@pytest.mark.parametrize(
    ("language", "words"),
    [
        (
            "en",
            {
                "subject": "Objection under Art. 21(1) GDPR to the processing of my personal data",
                "restrict": "Art. 18(1)(d) GDPR",
                "marketing": "Art. 21(2) GDPR",
                "month": "within one month of receipt (Art. 12(3) GDPR)",
                "complain": "supervisory authority",
                "genai": "Training content-generating AI",
                "todo": "[TO COMPLETE:",
                "date": "January 20, 2026",
            },
        ),
        (
            "de",
            {
                "subject": "Widerspruch nach Art. 21 Abs. 1 DSGVO",
                "restrict": "Art. 18 Abs. 1 lit. d DSGVO",
                "marketing": "Art. 21 Abs. 2 DSGVO",
                "month": "Art. 12 Abs. 3 DSGVO",
                "complain": "Aufsichtsbehörde",
                "genai": load_translations().gettext("de")("Training content-generating AI"),
                "todo": "[ZU ERGÄNZEN:",
                "date": "20. Januar 2026",
            },
        ),
    ],
)
def test_the_letter_holds_the_member_the_controller_the_purposes_and_the_articles(
    engine: DecisionEngine, tmp_path: Path, language: str, words: dict[str, str]
) -> None:
    r = renderer(engine, tmp_path, language)
    for text in (r.objection_txt(), r.objection_html()):
        assert "Anna Becker" in text and "anna@example.org" in text
        assert "LinkedIn Ireland Unlimited Company" in text and "Wilton Place" in text and "Dublin 2" in text
        for key, expected in words.items():
            assert expected in text, (language, key)
        # The data found, with rows: the archive's posts file.
        assert "Shares_8812345.csv" in text
    # Purposes resting on legitimate interest in the EEA for data found (from the policy), and only those.
    assert r.advice.legitimate_interest[0] == "genai.training"
    assert "ml.non_generative" in r.advice.legitimate_interest
    assert "ads.offsite" not in r.advice.legitimate_interest  # consent in the EEA
    txt = r.objection_txt()
    li = txt.split("\n\n")
    assert any(r.purpose_name("ml.non_generative") in block for block in li)
    # The letter names the data the objected purposes use: receipts (never used) are not in it.
    assert all(k.kind != "receipts" for k in r.advice.kinds)


def test_grounds_replace_the_marked_paragraph(engine: DecisionEngine, tmp_path: Path) -> None:
    grounds = "I do not want my posts to train AI: I write about patients' situations."
    r = renderer(engine, tmp_path, "en", grounds=grounds)
    assert "I do not want my posts to train AI" in r.objection_txt()
    assert "[TO COMPLETE" not in r.objection_txt()
    assert "patients&#39; situations" in r.objection_html()  # escaped in HTML


@pytest.mark.parametrize("language", ["en", "de"])
def test_the_checklist_names_the_switches_in_the_operator_s_order_with_menu_paths(
    engine: DecisionEngine, tmp_path: Path, language: str
) -> None:
    r = renderer(engine, tmp_path, language)
    text = r.checklist_md()
    if language == "en":
        path = "Settings → Data privacy → How LinkedIn uses your data → Data for Generative AI Improvement"
        assert "Anna Becker" in text and "only going forward" in text
        assert "Social, economic, and workplace research" in text
    else:
        path = (
            "Einstellungen → Datenschutz → So verwendet LinkedIn Ihre Daten"
            " → Daten zur Verbesserung generativer KI"
        )
        assert "Anna Becker" in text and "Zukunft" in text
        # Section names in German too, not the taxonomy's English ones.
        assert "Einstellungen → Werbedaten → Profildaten → Kontakte" in text
    assert path in text
    # In the order of the operator's pages: advertising rows first, then the privacy rows, as in the taxonomy.
    order = list(engine.taxonomy.settings)
    keys = [s.setting.key for s in r.advice.switches]
    assert keys == sorted(keys, key=order.index)
    assert keys.index("ads_connections") < keys.index("genai_improvement")
    # A switch that is off is not listed; the gen-AI switch stops the gen-AI training use.
    genai = next(s for s in r.advice.switches if s.setting.key == "genai_improvement")
    assert genai.purposes() == ["genai.training"]
    assert any(u.path.endswith("Shares_8812345.csv") for u in genai.uses)
    # Uses on legitimate interest with no switch are named as reachable only by an objection.
    assert "ml.non_generative" in r.advice.unswitchable


def test_a_switch_already_off_is_not_in_the_checklist(engine: DecisionEngine, tmp_path: Path) -> None:
    off = tmp_path / "settings.csv"
    off.write_text("setting,value\ngenai_improvement,false\n")
    result = inspect_archive(
        [archives.basic_export(tmp_path)],
        engine=engine,
        at=T,
        country="DE",
        settings=read_settings(off, engine),
    )
    r = Renderer(result, engine, today=WRITTEN_ON)
    assert "genai_improvement" not in {s.setting.key for s in r.advice.switches}
    assert "genai.training" not in r.advice.used


def test_outside_the_gdpr_the_letter_says_no_purpose_rests_on_legitimate_interest(
    engine: DecisionEngine, tmp_path: Path
) -> None:
    r = renderer(engine, tmp_path, "en", country="US")
    assert r.advice.legitimate_interest == []
    assert "names no such purpose for members in my region (Rest of world)" in r.objection_txt()


def test_the_report_is_self_contained_and_readable_without_colour(
    engine: DecisionEngine, tmp_path: Path
) -> None:
    html = renderer(engine, tmp_path, "de").report_html()
    # No script, and no address to fetch (the SVG namespace is a name, not a fetch).
    fetchable = html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<script" not in html and "http://" not in fetchable and "https://" not in fetchable
    assert not re.search(r"""(src|href)=["'](?!#|checklist\.md|objection\.)""", html)
    assert '<html lang="de">' in html and "<style>" in html
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert 'role="img"' in svg and "<title" in svg and "<desc" in svg
    # Treatments differ by pattern, and the numbers are in a table too.
    assert "pattern" in svg and 'class="numbers"' in html
    # Every file is in the report for gen-AI training, with its treatment.
    section = html[html.index('<section class="purpose" aria-labelledby="p-') :]
    for path in archives.EXPECTED["basic"]:
        assert f'data-path="{path}"' in section


def test_cli_writes_the_four_files_at_once(tmp_path: Path) -> None:
    basic = archives.basic_export(tmp_path)
    out = tmp_path / "report"
    done = cg(
        None,
        "inspect",
        str(basic),
        "--country",
        "DE",
        "--at",
        "2025-11-04",
        "--out",
        str(out),
        "--lang",
        "de",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    assert "Widerspruch" in (out / "objection.txt").read_text("utf-8")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report.")], "no staging folder left"
    # A second run replaces the files it wrote; a folder with other files is refused and left alone.
    again = cg(
        None, "inspect", str(basic), "--country", "DE", "--at", "2025-11-04", "--out", str(out), cwd=tmp_path
    )
    assert again.returncode == 0 and "Objection" in (out / "objection.txt").read_text("utf-8")
    (out / "mine.txt").write_text("keep")
    refused = one_error_line(
        cg(None, "inspect", str(basic), "--country", "DE", "--out", str(out), cwd=tmp_path)
    )
    assert "holds other files" in refused and (out / "mine.txt").read_text() == "keep"


@pytest.mark.parametrize(
    ("fixture", "language"), [("complete", "en"), ("basic", "de"), ("two_part", "en"), ("folder", "de")]
)
def test_every_fixture_archive_prints_the_report_and_writes_the_files(
    fixture: str, language: str, tmp_path: Path
) -> None:
    written = archives.write_all(tmp_path / "archives")
    paths = {
        "complete": written[:1],
        "basic": written[1:2],
        "two_part": written[2:4],
        "folder": written[4:],
    }[fixture]
    out = tmp_path / "out"
    done = cg(
        None,
        "inspect",
        *map(str, paths),
        "--country",
        "FR",
        "--at",
        "2025-11-04",
        "--out",
        str(out),
        "--lang",
        language,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "genai.training" in done.stdout and "wrote" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    letter = (out / "objection.txt").read_text("utf-8")
    assert ("Widerspruch" if language == "de" else "Objection") in letter
    assert "LinkedIn Ireland Unlimited Company" in letter


def test_a_failure_while_writing_leaves_out_as_it_was(tmp_path: Path, engine: DecisionEngine) -> None:
    out = tmp_path / "out"
    files = renderer(engine, tmp_path, "en").outputs()
    write_outputs(out, files)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    class Boom(dict[str, str]):
        def items(self):
            yield "report.html", "new"
            raise OSError(28, "No space left on device")

    with pytest.raises(Exception, match="nothing was written"):
        write_outputs(out, Boom())
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []


def _zip(path: Path, files: dict[str, bytes], *, compress: bool = True) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def _encrypted_zip(path: Path) -> Path:
    """A ZIP whose one entry has the 'encrypted' flag (general purpose bit 0)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        z.writestr("Profile.csv", b"First Name\nAnna\n")
    data = bytearray(buffer.getvalue())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at_ = data.find(signature)
        data[at_ + offset] |= 0x01
    path.write_bytes(bytes(data))
    return path


BAD: dict[str, tuple[str, object]] = {
    "not a ZIP": ("not a ZIP file", lambda p: (p / "a.zip").write_text("hello") and p / "a.zip"),
    "encrypted": ("encrypted", lambda p: _encrypted_zip(p / "a.zip")),
    "empty": ("no files", lambda p: _zip(p / "a.zip", {})),
    "bomb": ("ZIP bomb", lambda p: _zip(p / "a.zip", {"messages.csv": b"0" * (8 << 20)})),
    "dotdot": ("..", lambda p: _zip(p / "a.zip", {"../evil.csv": b"a\n1\n"})),
    "absolute": ("absolute", lambda p: _zip(p / "a.zip", {"/etc/evil.csv": b"a\n1\n"})),
    "50 MB field": (
        "field longer than",
        lambda p: _zip(
            p / "a.zip",
            {"Profile Summary.csv": b'Profile Summary\n"' + b"x" * (50 << 20) + b'"\n'},
            compress=False,
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_archives_get_one_line_exit_2_and_nothing_written(case: str, tmp_path: Path) -> None:
    expected, make = BAD[case]
    archive = make(tmp_path)  # type: ignore[operator]
    out = tmp_path / "out"
    line = one_error_line(
        cg(None, "inspect", str(archive), "--country", "DE", "--out", str(out), cwd=tmp_path)
    )
    assert expected in line, line
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []


@pytest.mark.parametrize(
    ("content", "warning"),
    [
        (b"First Name,Last Name,Maiden Name,Address,Birth Date,Headline\n", "header only, no rows"),
        (
            b"First Name,Last Name,Birth Date,Headline\nJ\xfcrgen,M\xfcller,,Caf\xe9 owner\n",
            "not valid UTF-8",
        ),
        (b"", "empty file"),
    ],
    ids=["header only", "invalid UTF-8", "empty"],
)
def test_files_read_incompletely_are_named_and_exit_3_with_the_report_written(
    content: bytes, warning: str, tmp_path: Path
) -> None:
    archive = _zip(tmp_path / "a.zip", {"Profile.csv": content, "Skills.csv": b"Name\nPython\n"})
    out = tmp_path / "out"
    done = cg(None, "inspect", str(archive), "--country", "DE", "--out", str(out), cwd=tmp_path)
    assert "Traceback" not in done.stderr
    assert done.returncode == 3, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: Profile.csv: ") and warning in lines[0], lines
    assert (out / "report.html").is_file()
    if warning == "not valid UTF-8":
        assert "Jürgen" in (out / "objection.txt").read_text("utf-8")  # cp1252, named, and read right


def test_the_json_contract_is_unchanged_by_out(tmp_path: Path) -> None:
    basic = archives.basic_export(tmp_path)
    done = cg(
        None,
        "inspect",
        str(basic),
        "--country",
        "DE",
        "--at",
        "2025-11-04",
        "--json",
        "--out",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert done.returncode == 0
    assert re.search(r'"genai.training"', done.stdout)
    assert (tmp_path / "o" / "checklist.md").is_file()


def test_lang_must_be_en_or_de(tmp_path: Path) -> None:
    line = one_error_line(
        cg(
            None,
            "inspect",
            str(archives.basic_export(tmp_path)),
            "--country",
            "DE",
            "--lang",
            "fr",
            cwd=tmp_path,
        )
    )
    assert "--lang" in line and "en, de" in line


def test_no_network_while_writing_the_files(
    engine: DecisionEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_network(monkeypatch)
    written = write_outputs(tmp_path / "o", renderer(engine, tmp_path, "de").outputs())
    assert len(written) == 4
