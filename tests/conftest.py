"""Shared fixtures: a real ledger on SQLite and on PostgreSQL, a decision engine, helpers.

PostgreSQL is not optional: a test that needs it fails when it is unreachable, so a green run always
means both databases were exercised. Each PostgreSQL test gets a schema of its own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from hypothesis import HealthCheck, settings

from consentgate.decisions import DecisionEngine
from consentgate.ledger.commands import member_drafts
from consentgate.ledger.events import EventDraft, EventKind, LedgerEvent, Source
from consentgate.ledger.store import Ledger
from consentgate.policy import load_timeline
from consentgate.taxonomy import load_taxonomy
from consentgate.timeutil import parse_date, parse_instant, to_micros
from tests.helpers import PG_DSN, FaultyStore, moto_server, pg_schema_url

NOW = parse_instant("2026-11-23T12:00:00Z")

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True
)
settings.load_profile("ci" if os.environ.get("CI") else "default")


class FixedClock:
    """A clock the test moves by hand: no hidden "now" in a test either."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _pg_schema_url() -> Iterator[str]:
    try:
        with pg_schema_url() as url:
            yield url
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL at {PG_DSN} is required for the ledger tests and is not reachable ({exc}). "
            "Start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.db'}"
    else:
        yield from _pg_schema_url()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def ledger(ledger_url: str, clock: FixedClock) -> Iterator[Ledger]:
    """An initialised ledger on SQLite and on PostgreSQL."""
    opened = Ledger.open(ledger_url, clock=clock, initialise=True)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def taxonomy():
    return load_taxonomy()


@pytest.fixture(scope="session")
def engine(taxonomy) -> DecisionEngine:
    return DecisionEngine(taxonomy, load_timeline())


def at(text: str) -> datetime:
    """An instant from ISO text; a bare date means 00:00 UTC."""
    return parse_instant(text)


def register(
    ledger: Ledger,
    member_id: int,
    country: str,
    *,
    birth_date: str | None = None,
    believed_minor: bool | None = None,
    registered_at: str = "2015-01-01T00:00:00Z",
) -> list[LedgerEvent]:
    return ledger.append(
        member_drafts(
            member_id=member_id,
            country=country,
            birth_date=None if birth_date is None else parse_date(birth_date),
            believed_minor=believed_minor,
            registered_at=at(registered_at),
            source=Source.import_,
            actor="test",
        )
    )


def set_setting(
    ledger: Ledger, member_id: int, key: str, value: bool, when: str, *, source: Source = Source.import_
) -> LedgerEvent:
    [event] = ledger.append(
        [
            EventDraft(
                member_id,
                EventKind.setting_changed,
                key,
                "true" if value else "false",
                to_micros(at(when)),
                source,
                "test",
                f"test:{uuid.uuid4().hex}",
            )
        ]
    )
    return event


# -- an S3-compatible store (moto's server mode): one server per test process, a bucket per test --

KEY = "testing-key"


@pytest.fixture(scope="session")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@dataclass
class Store:
    endpoint: str
    bucket: str
    env: dict[str, str]

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])

    @property
    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=KEY,
            aws_secret_access_key="secret",
            region_name="us-east-1",
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object under ``prefix``, read from the server itself (not through a proxy)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def put_tree(self, folder: Path, prefix: str) -> None:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                self.client.upload_file(
                    str(path), self.bucket, f"{prefix}/{path.relative_to(folder).as_posix()}"
                )

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)

    def get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)


def _env(url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "us-east-1",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "CONSENTGATE_STORE_ATTEMPTS": "1",
        "CONSENTGATE_STORE_TIMEOUT": "10",
    }


@pytest.fixture
def store(endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A new bucket on the S3 server; the AWS variables point this process at it."""
    made = Store(endpoint, f"cg-{uuid.uuid4().hex[:16]}", _env(endpoint, tmp_path))
    for name, value in made.env.items():
        monkeypatch.setenv(name, value)
    made.client.create_bucket(Bucket=made.bucket)
    return made


@pytest.fixture
def faulty(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyStore]:
    """The proxy in front of ``store``: this process reaches the bucket through it."""
    proxy = FaultyStore(store.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    yield proxy
    proxy.close()
