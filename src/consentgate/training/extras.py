"""The optional libraries the training helpers need, and the one sentence a missing one gets."""

from __future__ import annotations

from consentgate.exceptions import InputError


def missing_extra(library: str, extra: str, helper: str) -> InputError:
    """The error for ``helper`` when ``library`` is not installed: which extra brings it."""
    return InputError(f"{helper} needs {library}, which is not installed: pip install 'consentgate[{extra}]'")
