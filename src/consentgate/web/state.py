"""What the web application holds for its lifetime: configuration, ledger, policy engine, stores."""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from consentgate.decisions import DecisionEngine, member_state
from consentgate.ledger.events import EventDraft, LedgerEvent
from consentgate.ledger.store import Ledger
from consentgate.policy import Timeline, load_timeline
from consentgate.taxonomy import Taxonomy, load_taxonomy
from consentgate.web.accounts import AccountStore
from consentgate.web.body import DEFAULT_MAX_BODY
from consentgate.web.i18n import Translations, load_translations
from consentgate.web.ratelimit import Limiter, RedisLoginLimiter, SharedLoginLimiter
from consentgate.web.writer import GroupCommitWriter


@dataclass(frozen=True)
class PortalConfig:
    """How ``consentgate serve`` runs; every field has a safe default."""

    db: str
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    """Signs session cookies. A random key (the default) logs everyone out on restart."""
    secure_cookies: bool = False
    """Set the cookie's Secure flag (serve behind HTTPS)."""
    max_body_bytes: int = DEFAULT_MAX_BODY
    """The largest request body taken, on every route (``serve --max-body``); larger is a 413."""
    session_hours: int = 8
    trusted_header: str | None = None
    """Single sign-on mode: the proxy puts the logged-in username in this header. Off by default."""
    trusted_proxies: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    """Only requests from these networks may use ``trusted_header``."""
    login_attempts: int = 5
    login_window_seconds: int = 300
    rate_limit_store: str | None = None
    """``redis://…``: keep the login rate limit in Redis (``serve --rate-limit-store``); default: the
    ledger's database."""

    def proxy_trusted(self, host: str | None) -> bool:
        if host is None:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(net) for net in self.trusted_proxies)


KNOWN_MEMBER_SECONDS = 5.0


class Portal:
    """The application's long-lived objects, shared by every request (``app.state.portal``)."""

    def __init__(self, config: PortalConfig, ledger: Ledger, timeline: Timeline | None = None) -> None:
        self.config = config
        self.ledger = ledger
        self._timeline = timeline
        self._known: dict[int, float] = {}
        self.writer = GroupCommitWriter(ledger)
        """Group commit for ``append``: its thread starts on first use; ``close()`` stops it."""

    @cached_property
    def limiter(self) -> Limiter:
        """Shared by every worker and server: in Redis when configured, else in the database."""
        attempts, window = self.config.login_attempts, self.config.login_window_seconds
        if self.config.rate_limit_store:
            return RedisLoginLimiter(self.config.rate_limit_store, attempts, window)
        return SharedLoginLimiter(self.ledger.engine, attempts, window)

    @cached_property
    def taxonomy(self) -> Taxonomy:
        return load_taxonomy()

    @cached_property
    def timeline(self) -> Timeline:
        return self._timeline or load_timeline()

    @cached_property
    def engine(self) -> DecisionEngine:
        return DecisionEngine(self.taxonomy, self.timeline)

    @cached_property
    def accounts(self) -> AccountStore:
        return AccountStore(self.ledger)

    @cached_property
    def translations(self) -> Translations:
        return load_translations()

    def known_member(self, member_id: int) -> bool:
        """Whether the ledger knows ``member_id`` now; a "yes" is remembered for a few seconds.

        Only positive answers are cached: a newly registered member is seen at once, and a write for
        an unknown member always reaches the ledger's answer.
        """
        now = time.monotonic()
        if self._known.get(member_id, 0.0) > now:
            return True
        known = member_state(self.ledger, member_id, self.now()).known
        if known:
            if len(self._known) > 100_000:
                self._known.clear()
            self._known[member_id] = now + KNOWN_MEMBER_SECONDS
        return known

    def now(self) -> datetime:
        return self.ledger.clock()

    def append(self, drafts: Sequence[EventDraft]) -> list[LedgerEvent]:
        """Append events for a request; returns them once they are durable (the receipt).

        Concurrent requests share one transaction (group commit, ``writer.py``); a request that
        fails (e.g. an idempotency conflict) fails alone.
        """
        return self.writer.append(drafts)

    def close(self) -> None:
        """Commit pending appends and stop the writer thread (on application shutdown)."""
        self.writer.close()
