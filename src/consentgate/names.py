"""Names people give things (models, service tokens, accounts): one safe alphabet everywhere.

A name appears in console addresses, file names, log lines and shell commands, so it holds letters,
digits and ``. _ : @ + -`` only, starts with a letter or digit, and is at most 128 characters: no
spaces, slashes, ``..`` paths, control or look-alike characters. The CLI, the API and the stores
all call :func:`check_name`.
"""

from __future__ import annotations

import re

from consentgate.exceptions import InputError

MAX_NAME = 128
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)


def check_name(value: str, *, what: str) -> str:
    """``value`` if it is a safe name, else an ``InputError`` saying what is allowed."""
    if not _NAME.fullmatch(value) or ".." in value:
        shown = value if len(value) <= 60 else value[:59] + "…"
        raise InputError(
            f"{what}: {shown!r} is not a valid name (expected 1 to {MAX_NAME} letters, digits and"
            " . _ : @ + -, starting with a letter or digit, without '..')"
        )
    return value
