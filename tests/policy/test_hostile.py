"""`policy validate` on hostile files: one clear error naming the file and the line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from consentgate.policy import loader
from tests.helpers import cg

BUILTIN = Path(loader.__file__).parent / "builtin" / "linkedin-2025-11.yaml"


def _builtin_with(old: str, new: str) -> bytes:
    text = BUILTIN.read_text("utf-8")
    assert old in text
    return text.replace(old, new).encode()


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
)

CASES: dict[str, tuple[bytes, str]] = {
    "deep nesting": (b"id: x\na: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested more than 32 levels deep"),
    "invalid UTF-8": (b'id: x\ntitle: "caf\xe9"\n', "line 2: not valid UTF-8 (byte 0xe9"),
    "a list as a key": (b"id: x\n? [a, b]\n: 1\n", "line 2, column 3: a list as a key"),
    "a mapping as a key": (b"id: x\n? {a: 1}\n: 1\n", "a dict as a key"),
    "effective_from in year 10000": (
        _builtin_with("effective_from: 2025-11-03T00:00:00Z", "effective_from: 9999-12-31T23:59:59-01:00"),
        "effective_from: 9999-12-31T23:59:59-01:00 is out of range",
    ),
    "effective_from before 1900": (
        _builtin_with("effective_from: 2025-11-03T00:00:00Z", "effective_from: 0001-01-01T00:00:00Z"),
        "out of range",
    ),
    "version 10^29": (
        _builtin_with("version: 2", "version: 100000000000000000000000000000"),
        "version: Input should be less than or equal to 1000000",
    ),
    "alias bomb": (LAUGHS.encode(), "invalid policy"),
    "larger than 1 MiB": (b"id: x\n" + b"# padding\n" * 120_000, "larger than 1 MiB"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_policy_files_get_one_clear_error(case: str, tmp_path: Path) -> None:
    content, words = CASES[case]
    path = tmp_path / "policy.yaml"
    path.write_bytes(content)
    done = cg(None, "policy", "validate", str(path), cwd=tmp_path)
    assert "Traceback" not in done.stderr + done.stdout
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: {path}: invalid policy"), done.stderr
    assert words in done.stderr, done.stderr
