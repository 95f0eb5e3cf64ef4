"""The bad-input corpus: load the cases of ``tests/corpus/*.yaml`` and run one against a ledger.

A case is either a command line (``argv``) or an HTTP request (``http``), with the input it needs
(``input``: inline ``text`` or a generator from ``makers.py``; files kept in ``files/`` are named
as ``{files}/NAME``), the exit
status or HTTP status it must end in, and the words its message must contain (``says``). The
format is described in ``tests/corpus/README.md``.

Every case, whatever it expects, must also hold these: no traceback and no exit status 70 (an
unexpected failure), no 5xx, the security headers on every response, and, when it is refused,
nothing changed: the ledger's head is where it was and ``{out}`` holds nothing.

``python -m tests.corpus.runner [--backend sqlite|postgresql] [ID…]`` prints what each case
actually answers, for writing new cases.
"""

from __future__ import annotations

import argparse
import html
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from fastapi.testclient import TestClient

from consentgate import crashlog
from consentgate.cli import app as cli_app
from consentgate.cli import boundary
from consentgate.ledger.commands import member_drafts
from consentgate.ledger.events import Source
from consentgate.ledger.store import Ledger
from consentgate.objections import file_objection
from consentgate.taxonomy import load_taxonomy
from consentgate.timeutil import parse_date, parse_instant
from consentgate.web import PortalConfig, create_app
from consentgate.web import accounts as accounts_module
from consentgate.web.accounts import AccountStore, Role, Scope
from tests.corpus import makers
from tests.helpers import pg_schema_url

HERE = Path(__file__).parent
FILES = HERE / "files"
PASSWORD = "correct horse battery"
LINEAGE_LOG = "openlineage.jsonl"
"""A refused build leaves its START and FAIL events here: a record of the attempt, not a publication."""
SECURITY_HEADERS = ("x-content-type-options", "content-security-policy", "referrer-policy")
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_POLICY = re.compile(r'name="policy" value="([^"]+)"')


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    about: str
    says: tuple[str, ...]
    argv: tuple[str, ...] | None = None
    http: dict[str, Any] | None = None
    input: dict[str, Any] | None = None
    exit: int | None = None
    status: int | None = None
    db: bool = True
    env: dict[str, str] | None = None
    """Environment variables the command runs with (an empty value unsets one)."""


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(HERE.glob("*.yaml")):
        for raw in yaml.safe_load(path.read_text("utf-8")):
            unknown = set(raw) - {
                "id",
                "about",
                "argv",
                "http",
                "input",
                "exit",
                "status",
                "says",
                "db",
                "env",
            }
            if unknown:
                raise ValueError(f"{path.name}: case {raw.get('id')}: unknown fields {sorted(unknown)}")
            if ("argv" in raw) == ("http" in raw):
                raise ValueError(f"{path.name}: case {raw['id']}: give exactly one of argv and http")
            if ("exit" in raw) != ("argv" in raw) or ("status" in raw) != ("http" in raw):
                raise ValueError(f"{path.name}: case {raw['id']}: argv needs exit, http needs status")
            cases.append(
                Case(
                    id=raw["id"],
                    area=path.stem,
                    about=raw["about"],
                    says=tuple(raw.get("says", ())),
                    argv=tuple(str(a) for a in raw["argv"]) if "argv" in raw else None,
                    http=raw.get("http"),
                    input=raw.get("input"),
                    exit=raw.get("exit"),
                    status=raw.get("status"),
                    db=raw.get("db", True),
                    env={str(k): str(v) for k, v in raw["env"].items()} if "env" in raw else None,
                )
            )
    ids = [case.id for case in cases]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise ValueError(f"case ids used twice: {duplicated}")
    return cases


# --- the world the cases run in ---------------------------------------------------------------


MEMBER_A = 1001
MEMBER_B = 1004
MEMBER_WRITES = 1002
"""The member whose settings accepted cases change: not in the dataset, so builds do not depend on
the order in which cases run."""


@dataclass
class World:
    """One ledger with two members, accounts, a token, an objection and a small valid dataset."""

    url: str
    root: Path
    ledger: Ledger
    objection: str
    token: str
    narrow_token: str
    net: Path
    clients: dict[str, TestClient] = field(default_factory=dict)
    csrf: dict[str, str] = field(default_factory=dict)

    def head(self) -> tuple[int, str]:
        return self.ledger.head()

    def client(self, who: str) -> tuple[TestClient, str]:
        """A client logged in as ``who`` (anna, james, dpo) or anonymous, and its CSRF token."""
        if who not in self.clients:
            app = create_app(
                PortalConfig(db="(corpus ledger)", secret_key="corpus-secret"), ledger=self.ledger
            )
            client = TestClient(app)
            token = _csrf_of(client, "/login")
            if who != "anonymous":
                done = client.post(
                    "/login",
                    data={"username": who, "password": PASSWORD, "csrf_token": token},
                    follow_redirects=False,
                )
                assert done.status_code == 303, done.text
                token = _csrf_of(client, "/console" if who == "dpo" else "/notice")
                notice = _POLICY.search(client.get("/notice").text)
                if who != "dpo" and notice:  # read the notice once, as a member does after login
                    seen = {"policy": notice.group(1), "csrf_token": token}
                    assert client.post("/notice", data=seen, follow_redirects=False).status_code == 303
            self.clients[who], self.csrf[who] = client, token
        return self.clients[who], self.csrf[who]


def _csrf_of(client: TestClient, path: str) -> str:
    match = _CSRF.search(client.get(path).text)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def _write_dataset(root: Path) -> Path:
    records = root / "net" / "records"
    records.mkdir(parents=True)
    members = [MEMBER_A, MEMBER_A, MEMBER_B, MEMBER_B]
    pq.write_table(
        pa.table(
            {
                "record_id": pa.array([1, 2, 3, 4], pa.int64()),
                "member_id": pa.array(members, pa.int64()),
                "category": ["profile.skills", "content.posts", "profile.skills", "messages.private"],
                "created_at": pa.array([datetime(2025, 1, 1, tzinfo=UTC)] * 4, pa.timestamp("us", tz="UTC")),
                "payload": ["a", "b", "c", "d"],
            }
        ),
        records / "part-0.parquet",
    )
    return root / "net"


@contextmanager
def cheap_hashing() -> Iterator[None]:
    """argon2's cheapest profile while the world is made and used: production cost would dominate."""
    saved = accounts_module.hasher
    accounts_module.hasher = PasswordHasher.from_parameters(CHEAPEST)
    try:
        yield
    finally:
        accounts_module.hasher = saved


def make_world(url: str, root: Path) -> World:
    """The world, with every login done (and its notice read) before any case runs."""
    world = _make_world(url, root)
    for who in ("anonymous", "anna", "james", "dpo"):
        world.client(who)
    return world


def _make_world(url: str, root: Path) -> World:
    ledger = Ledger.open(url, initialise=True)
    for member, country in ((MEMBER_A, "DE"), (MEMBER_B, "US"), (MEMBER_WRITES, "DE")):
        ledger.append(
            member_drafts(
                member_id=member,
                country=country,
                birth_date=parse_date("1990-05-01"),
                believed_minor=False,
                registered_at=parse_instant("2015-01-01T00:00:00Z"),
                source=Source.import_,
                actor="corpus",
            )
        )
    store = AccountStore(ledger)
    store.create_account(username="anna", password=PASSWORD, role=Role.member, member_id=MEMBER_A)
    store.create_account(username="james", password=PASSWORD, role=Role.member, member_id=MEMBER_B)
    store.create_account(username="dpo", password=PASSWORD, role=Role.dpo)
    _, token = store.create_token(name="corpus-full", scopes=frozenset(Scope))
    _, narrow = store.create_token(name="corpus-narrow", scopes=frozenset({Scope.decisions_read}))
    [status] = file_objection(
        ledger, load_taxonomy(), member_id=MEMBER_A, purposes=["genai.training"], at=None, grounds="corpus"
    )
    return World(
        url=url,
        root=root,
        ledger=ledger,
        objection=status.reference,
        token=token,
        narrow_token=narrow,
        net=_write_dataset(root),
    )


# --- running one case -------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: int
    """The exit status, or the HTTP status."""
    text: str
    """Everything the case printed (stdout, stderr, the error line), or the response body."""
    headers: dict[str, str]
    changed: bool
    """The ledger's head moved."""
    published: list[str]
    """What ``{out}`` holds afterwards."""
    says: tuple[str, ...]
    """The case's words with the placeholders filled in."""
    lineage: list[str]
    """The event types in ``{out}/openlineage.jsonl``, in order."""


def _prepare_input(case: Case, tmp: Path) -> Path | None:
    spec = case.input
    if spec is None:
        return None
    path = tmp / str(spec.get("name", "input"))
    if "text" in spec:
        path.write_text(spec["text"], "utf-8")
    elif "make" in spec:
        maker: Callable[..., None] = getattr(makers, spec["make"])
        maker(path, **spec.get("args", {}))
    else:
        raise ValueError(f"case {case.id}: input needs text or make")
    return path


def _substitute(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def run_case(case: Case, world: World, tmp: Path) -> Outcome:
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / "out"
    values = {
        "tmp": str(tmp),
        "out": str(out),
        "db": world.url,
        "events": str(world.root / "events"),
        "net": str(world.net),
        "objection": world.objection,
        "files": str(FILES),
    }
    source = _prepare_input(case, tmp)
    if source is not None:
        values["input"] = str(source)
        if source.is_file():
            values["input_text"] = source.read_text("utf-8", errors="replace")
    before = world.head()
    if case.argv is not None:
        code, text, headers = _run_cli(case, values, tmp)
    else:
        code, text, headers = _run_http(case, world, values, source)
    published = sorted(p.name for p in out.iterdir() if p.name != LINEAGE_LOG) if out.is_dir() else []
    says = tuple(_substitute(words, values) for words in case.says)
    log = out / LINEAGE_LOG
    lineage = (
        [json.loads(line)["eventType"] for line in log.read_text("utf-8").splitlines()]
        if log.exists()
        else []
    )
    return Outcome(code, text, headers, world.head() != before, published, says, lineage)


def _run_cli(case: Case, values: dict[str, str], tmp: Path) -> tuple[int, str, dict[str, str]]:
    assert case.argv is not None
    argv = [_substitute(a, values) for a in case.argv]
    if case.db:
        argv = ["--db", values["db"], *argv]
    lines: list[str] = []
    stdout, stderr = io.StringIO(), io.StringIO()
    names = ("XDG_CACHE_HOME", "COLUMNS", crashlog.LOG_FILE_ENV, "CORPUS_PASSWORD", *(case.env or {}))
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update({"XDG_CACHE_HOME": str(tmp / "cache"), "COLUMNS": "200", "CORPUS_PASSWORD": PASSWORD})
    os.environ.update(case.env or {})
    os.environ.pop(crashlog.LOG_FILE_ENV, None)
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            code = boundary.run(lambda: cli_app(args=argv, prog_name="consentgate"), print_error=lines.append)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return code, "\n".join([stdout.getvalue(), stderr.getvalue(), *lines]), {}


def _run_http(
    case: Case, world: World, values: dict[str, str], source: Path | None
) -> tuple[int, str, dict[str, str]]:
    spec = dict(case.http or {})
    who = spec.pop("as", "anonymous")
    method = spec.pop("method", "GET")
    path = _substitute(spec.pop("path"), values)
    headers = {k: _substitute(str(v), values) for k, v in spec.pop("headers", {}).items()}
    kwargs: dict[str, Any] = {}
    if who == "token":
        client, _ = world.client("anonymous")
        headers.setdefault("Authorization", f"Bearer {world.token}")
    elif who == "narrow-token":
        client, _ = world.client("anonymous")
        headers.setdefault("Authorization", f"Bearer {world.narrow_token}")
    else:
        client, csrf = world.client(who)
        if spec.pop("csrf", True) and method != "GET":
            headers.setdefault("X-CSRF-Token", csrf)
            if "form" in spec:
                spec["form"].setdefault("csrf_token", csrf)
    spec.pop("csrf", None)
    if "json" in spec:
        kwargs["json"] = spec.pop("json")
    if "form" in spec:
        kwargs["data"] = {k: _substitute(str(v), values) for k, v in spec.pop("form").items()}
    if spec.pop("body_from_input", False):
        assert source is not None
        kwargs["content"] = source.read_bytes()
    if "body" in spec:
        kwargs["content"] = spec.pop("body").encode("utf-8")
    if spec:
        raise ValueError(f"case {case.id}: unknown http fields {sorted(spec)}")
    response = client.request(method, path, headers=headers, follow_redirects=False, **kwargs)
    return response.status_code, response.text, {k.lower(): v for k, v in response.headers.items()}


# --- the checks every case must pass ----------------------------------------------------------


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _readable(outcome: Outcome) -> str:
    """What a reader sees: a page's text without entities, a JSON document's strings decoded."""
    kind = outcome.headers.get("content-type", "")
    if "html" in kind:
        return html.unescape(outcome.text)
    if "json" in kind:
        try:
            return outcome.text + " " + " ".join(_strings(json.loads(outcome.text)))
        except ValueError:
            return outcome.text
    return outcome.text


def problems(case: Case, outcome: Outcome) -> list[str]:
    """What is wrong with ``outcome`` for ``case`` (empty: the case holds)."""
    found: list[str] = []
    flat = " ".join(_readable(outcome).split())
    if "Traceback (most recent call last)" in outcome.text:
        found.append("a traceback was printed")
    if case.argv is not None:
        if outcome.code == boundary.EXIT_SOFTWARE:
            found.append("exit 70: an unexpected failure")
        if outcome.code != case.exit:
            found.append(f"exit {outcome.code}, expected {case.exit}")
        refused = outcome.code != 0
    else:
        if outcome.code >= 500:
            found.append(f"HTTP {outcome.code}")
        if outcome.code != case.status:
            found.append(f"HTTP {outcome.code}, expected {case.status}")
        missing = [h for h in SECURITY_HEADERS if h not in outcome.headers]
        if missing:
            found.append(f"security headers missing: {missing}")
        refused = outcome.code >= 400
    for words in outcome.says:
        if " ".join(words.split()) not in flat:
            found.append(f"does not say {words!r}")
    if refused and outcome.changed:
        found.append("refused, yet the ledger changed")
    if refused and outcome.lineage and outcome.lineage[-1] != "FAIL":
        found.append(f"refused, yet its lineage run ends in {outcome.lineage[-1]}, not FAIL")
    if refused and outcome.published:
        found.append(f"refused, yet {{out}} holds {outcome.published}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("ids", nargs="*")
    options = parser.parse_args()
    cases = [c for c in load_cases() if not options.ids or c.id in options.ids]
    with tempfile.TemporaryDirectory() as folder, cheap_hashing():
        root = Path(folder)

        @contextmanager
        def sqlite_url() -> Iterator[str]:
            yield f"sqlite:///{root / 'ledger.db'}"

        with pg_schema_url("cg_corpus") if options.backend == "postgresql" else sqlite_url() as url:
            world = make_world(url, root / "world")
            for case in cases:
                outcome = run_case(case, world, root / "cases" / case.id)
                wrong = problems(case, outcome)
                mark = "ok  " if not wrong else "FAIL"
                print(f"{mark} {case.id}: {outcome.code}  {' | '.join(wrong)}")
                text = outcome.text
                if "<main" in text:  # a page: what its main part says, without the markup
                    text = re.sub(r"<[^>]+>", " ", text[text.index("<main") :])
                print(f"     {' '.join(text.split())[:500]}")
            world.ledger.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
