"""The archive reader: ZIP safety, and CSV quirks that must not change the rows read (DOMAIN §7)."""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentgate.exceptions import InputError
from consentgate.inspect.archive import MAX_RATIO, open_archive
from consentgate.inspect.csvread import FIELD_LIMIT, scan_csv

HEADER = ["CONVERSATION ID", "FROM", "DATE", "CONTENT"]
VALUE = st.text(alphabet=st.sampled_from(list("abcXYZ 019,;\"'\n-äöü€ß")), min_size=0, max_size=12)
ROW = st.tuples(st.text(alphabet="abcdef0123", min_size=1, max_size=6), VALUE, VALUE, VALUE).map(list)


def opener(data: bytes) -> Callable[[], BinaryIO]:
    return lambda: io.BytesIO(data)


def write(
    rows: list[list[str]], *, bom: bool, crlf: bool, notes: bool, quote_all: bool, trailing: bool
) -> bytes:
    out = io.StringIO()
    writer = csv.writer(
        out,
        quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL,
        lineterminator="\r\n" if crlf else "\n",
    )
    if notes:
        writer.writerow(["Notes:"])
        writer.writerow(["When exporting your connections, some email\naddresses may be missing."])
        writer.writerow([])
    writer.writerow([*HEADER, ""] if trailing else HEADER)
    for row in rows:
        writer.writerow([*row, ""] if trailing else row)
    data = out.getvalue().encode()
    return (codecs.BOM_UTF8 if bom else b"") + data


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(ROW, max_size=20),
    bom=st.booleans(),
    crlf=st.booleans(),
    notes=st.booleans(),
    quote_all=st.booleans(),
    trailing=st.booleans(),
)
def test_the_same_rows_survive_bom_crlf_notes_quoting_and_trailing_commas(
    rows: list[list[str]], bom: bool, crlf: bool, notes: bool, quote_all: bool, trailing: bool
) -> None:
    data = write(rows, bom=bom, crlf=crlf, notes=notes, quote_all=quote_all, trailing=trailing)
    scan = scan_csv(opener(data), "messages.csv", keep_rows=len(rows))
    assert scan.header == HEADER
    assert scan.bom == bom
    assert scan.records == len(rows)
    assert scan.first_rows == rows
    assert len(scan.notes) == (2 if notes else 0)


def test_not_utf8_is_read_with_a_named_fallback() -> None:
    data = "First Name,Last Name\nJürgen,Müller\n".encode("cp1252")
    scan = scan_csv(opener(data), "Profile.csv", keep_rows=1)
    assert scan.encoding == "cp1252" and scan.decoding_note and "not valid UTF-8" in scan.decoding_note
    assert scan.first_rows == [["Jürgen", "Müller"]]


def test_a_field_past_the_limit_is_refused_with_the_row() -> None:
    data = b"CONTENT,FROM\n" + b'"' + b"x" * (FIELD_LIMIT + 10) + b'",a\n'
    with pytest.raises(InputError, match=r"messages.csv: row \d+: a field longer than 16 MiB"):
        scan_csv(opener(data), "messages.csv")


def test_single_line_files_header_only_files_and_date_only_rows() -> None:
    none = scan_csv(opener(b"No conversations found\n"), "messages.csv")
    assert none.header is None and none.records == 0 and none.text_without_header == "No conversations found"
    only = scan_csv(opener(b"Name,Proficiency\r\n"), "Languages.csv")
    assert only.header == ["Name", "Proficiency"] and only.records == 0
    connections = b"First Name,Last Name,Company,Connected On\nAda,L,X,08 Feb 2026\n,,,09 Feb 2026\n\n"
    scan = scan_csv(opener(connections), "Connections.csv")
    assert (scan.records, scan.date_only_rows) == (2, 1)
    assert scan.columns_with_values() == {"First Name", "Last Name", "Company", "Connected On"}
    empty_column = scan_csv(opener(b"A,B,C\nx,,z\ny,,\n"), "x.csv")
    assert empty_column.columns_with_values() == {"A", "C"}


def test_the_header_is_found_by_the_catalogue_test_past_lines_that_look_like_one() -> None:
    data = b"Exported by,someone\nNotes:\nFirst Name,Last Name,URL\nAda,L,u\n"
    scan = scan_csv(opener(data), "Connections.csv", is_header=lambda row: "First Name" in row)
    assert scan.header == ["First Name", "Last Name", "URL"] and scan.records == 1
    assert scan.notes == ["Exported by,someone", "Notes:"]


# -- the archive ----------------------------------------------------------------------------------


def zip_with(path: Path, entries: dict[str, bytes], *, encrypt: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    if encrypt is not None:  # set the "encrypted" bit in the local and the central header
        raw = bytearray(path.read_bytes())
        for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            at = raw.find(signature)
            raw[at + offset] |= 0x1
        path.write_bytes(bytes(raw))
    return path


def test_zips_folders_and_parts_of_one_export(tmp_path: Path) -> None:
    one = zip_with(
        tmp_path / "a.zip", {"Export/Profile.csv": b"First Name\nAda\n", "Export/Skills.csv": b"Name\n"}
    )
    two = zip_with(tmp_path / "b.zip", {"Export/messages.csv": b"CONTENT,FROM\nhi,me\n"})
    archive = open_archive([one, two])
    assert [f.path for f in archive.files] == [
        "Export/Profile.csv",
        "Export/Skills.csv",
        "Export/messages.csv",
    ]
    with archive.files[0].open() as stream:
        assert stream.read() == b"First Name\nAda\n"
    folder = tmp_path / "unpacked"
    (folder / "Jobs").mkdir(parents=True)
    (folder / "Jobs" / "Job Applications.csv").write_bytes(b"Application Date\n")
    assert [f.path for f in open_archive([folder]).files] == ["Jobs/Job Applications.csv"]
    again = zip_with(tmp_path / "c.zip", {"Export/Skills.csv": b"Name\n"})
    with pytest.raises(InputError, match="is in both"):
        open_archive([one, again])


@pytest.mark.parametrize(
    ("entries", "encrypt", "message"),
    [
        ({}, None, "holds no files"),
        ({"../evil.csv": b"x"}, None, "points outside the archive"),
        ({"/etc/passwd": b"x"}, None, "points outside the archive"),
        ({"secret.csv": b"a,b\n"}, "secret.csv", "is encrypted"),
        ({"bomb.csv": b"0" * (64 << 20)}, None, f"more than {MAX_RATIO}-fold"),
    ],
)
def test_bad_archives_are_refused_with_a_clear_message(
    tmp_path: Path, entries: dict[str, bytes], encrypt: str | None, message: str
) -> None:
    path = zip_with(tmp_path / "x.zip", entries, encrypt=encrypt)
    with pytest.raises(InputError, match=message):
        open_archive([path])


def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.zip"
    path.write_text("not a zip")
    with pytest.raises(InputError, match="not a ZIP file"):
        open_archive([path])
    with pytest.raises(InputError, match="no such file"):
        open_archive([tmp_path / "missing.zip"])


def test_a_column_first_filled_in_the_last_row_is_found_and_blank_values_are_not_values() -> None:
    rows = ["A,B,C,D"] + ["x,, ,"] * 999 + ["x,,,late"] + ["x,"]  # the last row is short
    scan = scan_csv(opener("\r\n".join(rows).encode()), "t.csv")
    assert scan.records == 1001
    assert scan.columns_with_values() == {"A", "D"}  # C held only a space; B never held anything
