"""Ledger events: what is recorded, and the hash that chains each event to the one before.

The digest covers every field of the event and the previous event's hash. Strings are written with
their length in front (``len:text``) so no choice of text can make two different events hash alike;
instants are integer microseconds since the epoch (UTC). Anyone can recompute the chain from an
export with a few lines of code: sha256 over
``seq|member_id|len:kind|len:key|len:value|effective_at|recorded_at|len:source|len:actor|len:idempotency_key|prev_hash``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from consentgate.timeutil import from_micros

GENESIS_HASH = "0" * 64
MAX_MEMBER_ID = 2**63 - 1
"""Member ids are positive 64-bit integers: 1 to this, on every edge (CLI, imports, API)."""


class EventKind(StrEnum):
    member_registered = "member_registered"
    member_fact = "member_fact"
    """A member fact changed: key country, birth_date or believed_minor."""
    setting_changed = "setting_changed"
    objection_received = "objection_received"
    objection_decided = "objection_decided"
    objection_extended = "objection_extended"
    notice_acknowledged = "notice_acknowledged"


class Source(StrEnum):
    member = "member"
    import_ = "import"
    gpc = "gpc"
    dpo = "dpo"
    system = "system"


MEMBER_ORIGINATED = frozenset({Source.member, Source.gpc})
"""Events a member caused themselves; they are never back-dated."""

FACT_KEYS = ("country", "birth_date", "believed_minor")


@dataclass(frozen=True, slots=True)
class EventDraft:
    """An event to append; the ledger assigns ``seq``, ``recorded_at`` and the hashes."""

    member_id: int
    kind: EventKind
    key: str
    value: str
    effective_at: int | None
    """Microseconds since the epoch (UTC); None means the moment it is recorded."""
    source: Source
    actor: str
    idempotency_key: str

    def same_content(self, event: LedgerEvent) -> bool:
        """Whether ``event`` records exactly this draft (for idempotent retries)."""
        return (
            self.member_id == event.member_id
            and self.kind == event.kind
            and self.key == event.key
            and self.value == event.value
            and (self.effective_at is None or self.effective_at == event.effective_at)
            and self.source == event.source
        )


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """An event as stored: immutable once appended."""

    seq: int
    member_id: int
    kind: str
    key: str
    value: str
    effective_at: int
    recorded_at: int
    source: str
    actor: str
    idempotency_key: str
    prev_hash: str
    hash: str

    @property
    def effective(self) -> datetime:
        return from_micros(self.effective_at)

    @property
    def recorded(self) -> datetime:
        return from_micros(self.recorded_at)


def event_digest(
    seq: int,
    member_id: int,
    kind: str,
    key: str,
    value: str,
    effective_at: int,
    recorded_at: int,
    source: str,
    actor: str,
    idempotency_key: str,
    prev_hash: str,
) -> str:
    """The SHA-256 hex digest of one event chained to ``prev_hash``."""
    text = (
        f"{seq}|{member_id}|{len(kind)}:{kind}|{len(key)}:{key}|{len(value)}:{value}|"
        f"{effective_at}|{recorded_at}|{len(source)}:{source}|{len(actor)}:{actor}|"
        f"{len(idempotency_key)}:{idempotency_key}|{prev_hash}"
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def digest_sql(prev_hash: str = "prev_hash") -> str:
    """``event_digest`` as a DuckDB expression over a relation with the event columns.

    DuckDB's ``length`` counts code points, as Python's ``len`` does; integers print alike. Used to
    verify the event mirror in bulk; a test compares it with ``event_digest`` on awkward text.
    """
    parts = ["seq", "'|'", "member_id", "'|'"]
    for name in ("kind", "key", "value"):
        parts += [f"length({name})", "':'", name, "'|'"]
    parts += ["effective_at", "'|'", "recorded_at", "'|'"]
    for name in ("source", "actor", "idempotency_key"):
        parts += [f"length({name})", "':'", name, "'|'"]
    parts.append(prev_hash)
    return f"sha256(concat({', '.join(parts)}))"


def digest_of(event: LedgerEvent) -> str:
    """Recompute the digest of a stored event from its fields."""
    return event_digest(
        event.seq,
        event.member_id,
        event.kind,
        event.key,
        event.value,
        event.effective_at,
        event.recorded_at,
        event.source,
        event.actor,
        event.idempotency_key,
        event.prev_hash,
    )


@dataclass(slots=True)
class EventBatch:
    """Many event drafts as columns: what bulk imports append, without one object per event."""

    member_id: list[int]
    kind: list[str]
    key: list[str]
    value: list[str]
    effective_at: list[int]
    source: list[str]
    actor: list[str]
    idempotency_key: list[str]

    @classmethod
    def empty(cls) -> EventBatch:
        return cls([], [], [], [], [], [], [], [])

    @classmethod
    def of(cls, drafts: Iterable[EventDraft]) -> EventBatch:
        batch = cls.empty()
        for d in drafts:
            if d.effective_at is None:
                raise ValueError("bulk appends need explicit effective times")
            batch.add(
                d.member_id, d.kind, d.key, d.value, d.effective_at, d.source, d.actor, d.idempotency_key
            )
        return batch

    def add(
        self,
        member_id: int,
        kind: str,
        key: str,
        value: str,
        effective_at: int,
        source: str,
        actor: str,
        idem: str,
    ) -> None:
        self.member_id.append(member_id)
        self.kind.append(str(kind))
        self.key.append(key)
        self.value.append(value)
        self.effective_at.append(effective_at)
        self.source.append(str(source))
        self.actor.append(actor)
        self.idempotency_key.append(idem)

    def __len__(self) -> int:
        return len(self.member_id)

    def drafts(self) -> list[EventDraft]:
        return [
            EventDraft(m, EventKind(k), key, v, e, Source(s), a, i)
            for m, k, key, v, e, s, a, i in zip(
                self.member_id,
                self.kind,
                self.key,
                self.value,
                self.effective_at,
                self.source,
                self.actor,
                self.idempotency_key,
                strict=True,
            )
        ]

    def same_content(self, index: int, event: LedgerEvent) -> bool:
        return (
            self.member_id[index] == event.member_id
            and self.kind[index] == event.kind
            and self.key[index] == event.key
            and self.value[index] == event.value
            and self.effective_at[index] == event.effective_at
            and self.source[index] == event.source
        )
