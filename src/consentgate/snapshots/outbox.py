"""The OpenLineage outbox: events are recorded in the registry database with the build's state
change and delivered afterwards, so a lineage server that is down or failing never fails a build.

- START is recorded in the transaction that takes the build's lease, COMPLETE in the one that
  registers the snapshot, FAIL in the one that gives the lease up: the registry and the outbox
  never disagree, and what the lineage server has not acknowledged stays pending.
- The build delivers what is pending for its target once, briefly; ``consentgate lineage send``
  delivers every pending event with retries and backoff. Events go out per target in the order they
  were recorded (a COMPLETE never overtakes its START); delivered events are marked, never deleted.
- A target is the endpoint's URL (``http(s)://…/api/v1/lineage``) or the file log's absolute path.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import requests
import urllib3
from openlineage.client.client import OpenLineageClient
from openlineage.client.event_v2 import RunEvent
from openlineage.client.serde import Serde
from sqlalchemy import Connection, func, insert, select, update

from consentgate.exceptions import one_line
from consentgate.ledger.schema import lineage_outbox
from consentgate.ledger.store import Ledger
from consentgate.snapshots.openlineage import TIMEOUT_SECONDS
from consentgate.timeutil import now_utc, to_micros

log = logging.getLogger(__name__)

ClientFor = Callable[[str], OpenLineageClient]


def record(conn: Connection, target: str, event: RunEvent) -> None:
    """Record ``event`` for ``target`` in the caller's transaction."""
    conn.execute(
        insert(lineage_outbox).values(
            target=target,
            run_id=str(event.run.runId),
            event_type=event.eventType.value if event.eventType is not None else "OTHER",
            event=Serde.to_json(event),
            created_at=to_micros(now_utc()),
            attempts=0,
        )
    )


def recorder(target: str, event: RunEvent) -> Callable[[Connection], None]:
    """``record`` bound to one event, for the transactions that take callbacks."""
    return lambda conn: record(conn, target, event)


@dataclass
class Delivery:
    """What a delivery round did: events delivered, events still pending and why, per target."""

    delivered: int = 0
    pending: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def pending_total(self) -> int:
        return sum(self.pending.values())

    def warning(self) -> str | None:
        """One line for the user when something is left pending, else None."""
        if not self.pending_total:
            return None
        where = "; ".join(
            f"{target}: {self.errors.get(target, 'not tried')}" for target in sorted(self.pending)
        )
        return (
            f"OpenLineage: {self.pending_total} event(s) pending ({where}); the build is complete,"
            " `consentgate lineage send` delivers them"
        )


def pending(ledger: Ledger) -> dict[str, int]:
    """Pending events per target."""
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            select(lineage_outbox.c.target, func.count())
            .where(lineage_outbox.c.delivered_at.is_(None))
            .group_by(lineage_outbox.c.target)
        ).all()
    return {str(target): int(n) for target, n in rows}


def deliver(
    ledger: Ledger,
    client_for: ClientFor,
    *,
    targets: set[str] | None = None,
    attempts: int = 1,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """Deliver pending events, oldest first; per target, stop at the first event that still fails
    after ``attempts`` tries (waiting ``backoff``, doubled each time, between them)."""
    result = Delivery()
    query = (
        select(lineage_outbox.c.id, lineage_outbox.c.target, lineage_outbox.c.event)
        .where(lineage_outbox.c.delivered_at.is_(None))
        .order_by(lineage_outbox.c.id)
    )
    if targets is not None:  # a build reads only its own target's backlog
        query = query.where(lineage_outbox.c.target.in_(sorted(targets)))
    with ledger.engine.connect() as conn:
        rows = conn.execute(query).all()
    blocked: set[str] = set()
    clients: dict[str, OpenLineageClient] = {}
    for row_id, target, body in rows:
        if target in blocked:
            result.pending[target] = result.pending.get(target, 0) + 1
            continue
        error = _send(clients, client_for, target, body, attempts, backoff, sleep)
        with ledger.engine.begin() as conn:
            values: dict[str, Any] = {"attempts": lineage_outbox.c.attempts + 1}
            if error is None:
                values |= {"delivered_at": to_micros(now_utc()), "last_error": None}
            else:
                values["last_error"] = error
            conn.execute(update(lineage_outbox).where(lineage_outbox.c.id == row_id).values(**values))
        if error is None:
            result.delivered += 1
        else:
            log.info("OpenLineage event %s for %s not delivered: %s", row_id, target, error)
            blocked.add(target)
            result.errors[target] = error
            result.pending[target] = result.pending.get(target, 0) + 1
    for client in clients.values():
        client.transport.close()
    return result


def _send(
    clients: dict[str, OpenLineageClient],
    client_for: ClientFor,
    target: str,
    body: str,
    attempts: int,
    backoff: float,
    sleep: Callable[[float], None],
) -> str | None:
    """None when delivered, else the last error in one line."""
    error = "not tried"
    for attempt in range(max(attempts, 1)):
        if attempt:
            sleep(backoff * 2 ** (attempt - 1))
        try:
            if target not in clients:
                clients[target] = client_for(target)
            client = clients[target]
            # The transports serialise a dict as they do an event: the bytes sent are the recorded ones.
            client.transport.emit(cast(RunEvent, json.loads(body)))
            return None
        except Exception as exc:  # requests', urllib3's and the file transport's errors alike
            error = reason(exc)
    return error


def reason(exc: BaseException) -> str:
    """Why a delivery failed, in a few words: ``HTTP 500 Internal Server Error``, ``connection
    refused``, ``no answer within 5 s``; else the error's own first line."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}".strip()
    if isinstance(exc, requests.Timeout):
        return f"no answer within {TIMEOUT_SECONDS:g} s"
    if isinstance(exc, requests.ConnectionError):
        inner = exc.args[0] if exc.args else None
        cause = getattr(getattr(inner, "reason", None), "__cause__", None) or getattr(inner, "reason", None)
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        if isinstance(cause, urllib3.exceptions.ResponseError):
            return "the endpoint kept answering with a server error"
    return one_line(exc, 300)
