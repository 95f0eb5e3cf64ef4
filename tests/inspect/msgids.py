"""Every text the inspector's files and page can show, as msgids of the portal's catalogue."""

from __future__ import annotations

import re
from importlib import resources

from babel.messages.extract import extract_from_file

from consentgate.inspect import render
from consentgate.inspect.inspector import NOTES
from consentgate.taxonomy import load_taxonomy

_MSGID = re.compile(r"""_\(\s*(?:"([^"]+)"|'([^']+)')\s*\)""")


def inspector_msgids() -> set[str]:
    found: set[str] = set()
    package = resources.files("consentgate.inspect")
    for template in (package / "templates").iterdir():
        if template.name.endswith((".html", ".md", ".txt")):
            for double, single in _MSGID.findall(template.read_text("utf-8")):
                found.add(double or single)
    for module in ("render.py", "serve.py"):
        found |= {str(m[1]) for m in extract_from_file("python", str(package / module)) if m[1]}
    found |= set(render.TREATMENTS.values()) | set(render.REASONS.values()) | set(render.BASES.values())
    found |= set(NOTES.values())
    taxonomy = load_taxonomy()
    found |= {c.name for c in taxonomy.categories.values()}
    found |= {r.name for r in taxonomy.regions.values()}
    found |= {p.name for p in taxonomy.purposes.values()}
    return found
