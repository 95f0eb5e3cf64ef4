"""The DPO console: objections by due date, decisions and extensions, chain status, debt and charts.

Every route needs the DPO role; every form post carries the session's CSRF token. Decisions and
extensions go through :mod:`consentgate.objections`, so the rules (reasons required, one extension
announced within the first month, one decision) are the same as on the command line; when the domain
refuses, the detail page is shown again with the reason and nothing is recorded.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import text

from consentgate.decisions.engine import DecisionEngine
from consentgate.exceptions import ConflictError, ConsentgateError, InputError
from consentgate.ledger.events import EventKind
from consentgate.ledger.state import ObjectionOutcome, ObjectionStatus
from consentgate.ledger.store import Ledger
from consentgate.objections import decide_objection, extend_objection, get_objection, list_objections
from consentgate.snapshots.lineage import Debt, objection_debt
from consentgate.snapshots.registry import ModelEntry, OverriddenMember, Registry, SnapshotEntry
from consentgate.taxonomy import REGIONS
from consentgate.timeutil import to_micros
from consentgate.web.auth import CSRFChecked, CurrentDPO, PortalDep
from consentgate.web.charts import Chart, Series, bar_chart, line_chart
from consentgate.web.state import Portal
from consentgate.web.templating import gettext_for, render

router = APIRouter(prefix="/console", include_in_schema=False)

GENAI_SETTING = "genai_improvement"
CHART_START = datetime(2024, 9, 1, tzinfo=UTC)
"""The opt-out chart starts with the month the generative-AI setting was introduced."""
WEEKS = 26
DEBT_LIST_LIMIT = 500

Gettext = Callable[[str], str]


# --- opt-out rate by region ----------------------------------------------------------------------------


def month_starts(first: datetime, now: datetime) -> list[datetime]:
    """The first instant of every month from ``first``'s month to ``now``'s month (UTC)."""
    out: list[datetime] = []
    current = datetime(first.year, first.month, 1, tzinfo=UTC)
    while current <= now:
        out.append(current)
        current = _next_month(current)
    return out


def _next_month(start: datetime) -> datetime:
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class OptOutRates:
    """Per month and region: registered members, and how many of them have the setting off."""

    months: tuple[str, ...]
    """``YYYY-MM`` labels; each month is measured at its end (the current month: now)."""
    registered: dict[str, list[int]]
    off: dict[str, list[int]]

    @property
    def regions(self) -> list[str]:
        """Regions with at least one registered member in some month, in the taxonomy's order."""
        known = [r for r in REGIONS if any(self.registered.get(r, []))]
        return known + sorted(r for r in self.registered if r not in REGIONS and any(self.registered[r]))

    def rate(self, region: str, index: int) -> float | None:
        """Percentage of the region's registered members with the setting off (None: nobody there)."""
        members = self.registered[region][index]
        return None if members == 0 else 100.0 * self.off[region][index] / members


_OPTOUT_SQL = text(
    "SELECT member_id, kind, key, value, effective_at FROM events "
    "WHERE kind = :registered OR (kind = :fact AND key = 'country') "
    "OR (kind = :setting_kind AND key = :setting) "
    "ORDER BY member_id, effective_at, seq"
)


def optout_rates(portal: Portal, now: datetime, *, setting: str = GENAI_SETTING) -> OptOutRates:
    """The share of registered members per region whose ``setting`` is effectively off, month by month.

    One streamed, ordered query over the relevant events (registration, country, the setting): for
    each member the events are replayed in (effective_at, seq) order, so each state holds from the
    first month end at or after its event until the next change. The counts are kept as difference
    arrays per region, so the cost is one pass over the events, not members × months. Members who
    never chose count as off where the policy in force at that month end makes the default off.
    """
    starts = month_starts(CHART_START, now)
    now_us = to_micros(now)
    bounds = [min(to_micros(_next_month(s)) - 1, now_us) for s in starts]
    n = len(bounds)
    labels = tuple(f"{s:%Y-%m}" for s in starts)
    registered: dict[str, list[int]] = {}
    explicit_off: dict[str, list[int]] = {}
    no_choice: dict[str, list[int]] = {}

    def add(table: dict[str, list[int]], region: str, first: int, last: int) -> None:
        row = table.setdefault(region, [0] * (n + 1))
        row[first] += 1
        row[last] -= 1

    def emit(status: tuple[bool, str | None, bool | None], first: int, last: int) -> None:
        is_registered, region, value = status
        if first >= last or not is_registered or region is None:
            return
        add(registered, region, first, last)
        if value is False:
            add(explicit_off, region, first, last)
        elif value is None:
            add(no_choice, region, first, last)

    region_cache: dict[str, str | None] = {}

    def region_of(country: str) -> str | None:
        if country not in region_cache:
            region_cache[country] = portal.taxonomy.region_of(country) if country else None
        return region_cache[country]

    if n:
        with portal.ledger.engine.connect() as conn:
            rows = conn.execution_options(stream_results=True, yield_per=20_000).execute(
                _OPTOUT_SQL,
                {
                    "registered": str(EventKind.member_registered),
                    "fact": str(EventKind.member_fact),
                    "setting_kind": str(EventKind.setting_changed),
                    "setting": setting,
                },
            )
            member: int | None = None
            status: tuple[bool, str | None, bool | None] = (False, None, None)
            since = 0
            for member_id, kind, _key, value, effective_at in rows:
                if member_id != member:
                    if member is not None:
                        emit(status, since, n)
                    member, status, since = member_id, (False, None, None), 0
                index = bisect_left(bounds, int(effective_at))
                if index > since:
                    emit(status, since, index)
                    since = index
                is_registered, region, choice = status
                if kind == EventKind.member_registered:
                    is_registered = value == "true"
                elif kind == EventKind.member_fact:
                    region = region_of(value)
                else:
                    choice = value == "true"
                status = (is_registered, region, choice)
            if member is not None:
                emit(status, since, n)

    def totals(table: dict[str, list[int]], region: str) -> list[int]:
        row = table.get(region, [0] * (n + 1))
        out, running = [], 0
        for delta in row[:n]:
            running += delta
            out.append(running)
        return out

    engine = portal.engine
    default = portal.taxonomy.settings[setting].defaults
    off: dict[str, list[int]] = {}
    members: dict[str, list[int]] = {}
    for region in registered:
        members[region] = totals(registered, region)
        explicit, unset = totals(explicit_off, region), totals(no_choice, region)
        row: list[int] = []
        for i, bound in enumerate(bounds):
            policy = portal.timeline.in_force(datetime.fromtimestamp(bound / 1_000_000, UTC))
            on = (
                engine.default_for(policy, setting, region)
                if policy is not None
                else default.get(region, False)
            )
            row.append(explicit[i] + (0 if on else unset[i]))
        off[region] = row
    return OptOutRates(labels, members, off)


# --- objections per ISO week ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WeekCounts:
    weeks: tuple[str, ...]
    """ISO week labels, ``YYYY-Www``, oldest first; the last is the current week."""
    received: tuple[int, ...]
    decided: tuple[int, ...]
    overdue: tuple[int, ...]
    """Pending past their due date at the end of the week (for the current week: now)."""


def objection_weeks(statuses: Iterable[ObjectionStatus], now: datetime, weeks: int = WEEKS) -> WeekCounts:
    this_monday = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=now.weekday())
    starts = [this_monday - timedelta(weeks=weeks - 1 - k) for k in range(weeks)]
    received = [0] * weeks
    decided = [0] * weeks
    overdue = [0] * weeks
    first = starts[0]
    for status in statuses:
        index = (status.received_at - first) // timedelta(weeks=1)
        if 0 <= index < weeks:
            received[index] += 1
        decided_at = status.decision.effective if status.decision is not None else None
        if decided_at is not None:
            index = (decided_at - first) // timedelta(weeks=1)
            if 0 <= index < weeks:
                decided[index] += 1
        for k, start in enumerate(starts):
            end = min(start + timedelta(weeks=1), now)
            if status.received_at <= end and end > status.due and (decided_at is None or decided_at > end):
                overdue[k] += 1
    labels = []
    for start in starts:
        year, week, _ = start.isocalendar()
        labels.append(f"{year}-W{week:02d}")
    return WeekCounts(tuple(labels), tuple(received), tuple(decided), tuple(overdue))


# --- charts ---------------------------------------------------------------------------------------------


def optout_chart(rates: OptOutRates, _: Gettext) -> Chart:
    regions = rates.regions
    series = [
        Series(region, _(region_name), tuple(rates.rate(region, i) for i in range(len(rates.months))))
        for region, region_name in ((r, _region_name(r)) for r in regions)
    ]
    return line_chart(
        chart_id="chart-optout",
        title=_("Opt-out rate for generative AI training, by region"),
        description=_(
            "For each month since September 2024, the share of registered members in each region whose "
            "setting for generative AI training is off at the end of the month. Each region is drawn "
            "with its own dash style and marker shape; the table below gives the same numbers."
        ),
        x_title=_("Month"),
        y_title=_("Members with the setting off (%)"),
        x_labels=rates.months,
        series=series,
        percent=True,
    )


def _region_name(region: str) -> str:
    names = {
        "EEA": "EU/EEA",
        "CH": "Switzerland",
        "UK": "United Kingdom",
        "CA": "Canada",
        "HK": "Hong Kong",
        "CN": "Mainland China",
        "ROW": "Rest of the world",
    }
    return names.get(region, region)


def objections_chart(counts: WeekCounts, _: Gettext) -> Chart:
    return bar_chart(
        chart_id="chart-objections",
        title=_("Objections per week"),
        description=_(
            "For each of the last 26 ISO weeks: objections received, objections decided, and objections "
            "still undecided after their due date at the end of the week. Each kind has its own fill "
            "pattern; the table below gives the same numbers."
        ),
        x_title=_("ISO week"),
        y_title=_("Objections"),
        x_labels=counts.weeks,
        series=[
            Series("received", _("Received"), tuple(float(v) for v in counts.received)),
            Series("decided", _("Decided"), tuple(float(v) for v in counts.decided)),
            Series("overdue", _("Overdue at week end"), tuple(float(v) for v in counts.overdue)),
        ],
    )


# --- snapshots, models and their objection debt ---------------------------------------------------------


@dataclass
class DebtSummary:
    """Each snapshot's and model's objection debt (distinct members), or why it could not be computed."""

    snapshots: list[SnapshotEntry] = field(default_factory=list)
    snapshot_debt: dict[str, int] = field(default_factory=dict)
    models: list[tuple[ModelEntry, int | None]] = field(default_factory=list)
    """(model, debt; None if one of its snapshots could not be computed)."""
    errors: dict[str, str] = field(default_factory=dict)
    """snapshot id → why its debt is unknown."""

    @property
    def overrides(self) -> list[ModelEntry]:
        """Models registered despite members in debt: exceptions the DPO must see."""
        return [m for m, _ in self.models if m.override is not None]


def debt_summary(ledger: Ledger, engine: DecisionEngine) -> DebtSummary:
    registry = Registry(ledger)
    summary = DebtSummary(snapshots=registry.snapshots())
    models = registry.models()
    if not summary.snapshots:
        summary.models = [(m, 0 if not m.snapshot_ids else None) for m in models]
        return summary
    members: dict[str, set[int]] = {s.snapshot_id: set() for s in summary.snapshots}
    try:
        debts = objection_debt(ledger, engine, summary.snapshots)
    except (ConsentgateError, OSError):
        debts = []
        for entry in summary.snapshots:  # find which snapshot is the problem, keep the others
            try:
                debts.extend(objection_debt(ledger, engine, [entry]))
            except (ConsentgateError, OSError) as exc:
                summary.errors[entry.snapshot_id] = str(exc)
    for debt in debts:
        members[debt.snapshot_id].add(debt.member_id)
    summary.snapshot_debt = {k: len(v) for k, v in members.items() if k not in summary.errors}
    for model in models:
        if any(s in summary.errors or s not in members for s in model.snapshot_ids):
            summary.models.append((model, None))
        else:
            union = set().union(*(members[s] for s in model.snapshot_ids))
            summary.models.append((model, len(union)))
    return summary


def first_debts(debts: Sequence[Debt]) -> list[Debt]:
    """Per member, the earliest debt (a model's snapshots may each hold the member)."""
    first: dict[int, Debt] = {}
    for debt in debts:
        known = first.get(debt.member_id)
        if known is None or (debt.effective_at, debt.seq) < (known.effective_at, known.seq):
            first[debt.member_id] = debt
    return sorted(first.values(), key=lambda d: (d.effective_at, d.member_id))


# --- pages ----------------------------------------------------------------------------------------------


@router.get("")
def console_page(request: Request, portal: PortalDep, principal: CurrentDPO) -> Response:
    now = portal.now()
    _ = gettext_for(request)
    objections = list_objections(portal.ledger)
    pending = [o for o in objections if o.outcome is ObjectionOutcome.pending]
    overdue = [o for o in pending if o.overdue(now)]
    report = portal.ledger.verify()
    rates = optout_rates(portal, now)
    weeks = objection_weeks(objections, now)
    return render(
        request,
        "console/index.html",
        {
            "now": now,
            "objections": objections,
            "counts": {
                "pending": len(pending),
                "overdue": len(overdue),
                "decided": len(objections) - len(pending),
            },
            "chain": report,
            "debt": debt_summary(portal.ledger, portal.engine),
            "charts": [optout_chart(rates, _), objections_chart(weeks, _)],
        },
    )


def _detail(
    request: Request,
    portal: Portal,
    reference: str,
    *,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    objection = get_objection(portal.ledger, reference)
    now = portal.now()
    pending = objection.outcome is ObjectionOutcome.pending
    return render(
        request,
        "console/objection.html",
        {
            "o": objection,
            "now": now,
            "can_decide": pending,
            "can_extend": pending and objection.extension is None and now <= objection.first_month_ends,
            "error": error,
            "form": form or {},
            "recorded": request.query_params.get("recorded"),
        },
        status=status,
    )


@router.get("/objections/{reference}")
def objection_page(request: Request, portal: PortalDep, principal: CurrentDPO, reference: str) -> Response:
    return _detail(request, portal, reference)


@router.post("/objections/{reference}/decide", dependencies=[CSRFChecked])
def decide_action(
    request: Request,
    portal: PortalDep,
    principal: CurrentDPO,
    reference: str,
    outcome: Annotated[str, Form(max_length=20)] = "",
    reason: Annotated[str, Form(max_length=5000)] = "",
) -> Response:
    form = {"outcome": outcome, "reason": reason}
    _ = gettext_for(request)
    try:
        if outcome not in ("uphold", "reject"):
            raise InputError(_("Choose whether to uphold or to reject the objection."))
        decide_objection(
            portal.ledger,
            reference=reference,
            uphold=outcome == "uphold",
            reason=reason,
            at=None,
            actor=principal.actor,
        )
    except (InputError, ConflictError) as exc:
        return _detail(request, portal, reference, error=str(exc), form=form, status=exc.status_code)
    return RedirectResponse(f"/console/objections/{reference}?recorded=decision", status_code=303)


@router.post("/objections/{reference}/extend", dependencies=[CSRFChecked])
def extend_action(
    request: Request,
    portal: PortalDep,
    principal: CurrentDPO,
    reference: str,
    months: Annotated[str, Form(max_length=10)] = "",
    reason: Annotated[str, Form(max_length=5000)] = "",
) -> Response:
    form = {"months": months, "reason": reason}
    _ = gettext_for(request)
    try:
        try:
            count = int(months.strip())
        except ValueError:
            raise InputError(_("Choose an extension of one or two months.")) from None
        extend_objection(
            portal.ledger, reference=reference, months=count, reason=reason, at=None, actor=principal.actor
        )
    except (InputError, ConflictError) as exc:
        return _detail(request, portal, reference, error=str(exc), form=form, status=exc.status_code)
    return RedirectResponse(f"/console/objections/{reference}?recorded=extension", status_code=303)


def _debt_page(request: Request, what: str, name: str, debts: list[Debt], **extra: Any) -> Response:
    return render(
        request,
        "console/debt.html",
        {
            "what": what,
            "name": name,
            "total": len(debts),
            "debts": debts[:DEBT_LIST_LIMIT],
            "limit": DEBT_LIST_LIMIT,
            **extra,
        },
    )


@router.get("/snapshots/{snapshot_id}/debt")
def snapshot_debt_page(
    request: Request, portal: PortalDep, principal: CurrentDPO, snapshot_id: str
) -> Response:
    registry = Registry(portal.ledger)
    entry = registry.require(snapshot_id)
    debts = first_debts(objection_debt(portal.ledger, portal.engine, [entry]))
    return _debt_page(request, "snapshot", snapshot_id, debts, snapshot=entry)


@router.get("/models/{name}/debt")
def model_debt_page(request: Request, portal: PortalDep, principal: CurrentDPO, name: str) -> Response:
    registry = Registry(portal.ledger)
    model = registry.require_model(name)
    entries = [registry.require(s) for s in model.snapshot_ids]
    debts = first_debts(objection_debt(portal.ledger, portal.engine, entries))
    overridden: list[OverriddenMember] = [m for _, m in registry.overridden(model=name)]
    return _debt_page(
        request,
        "model",
        name,
        debts,
        model=model,
        overridden=overridden[:DEBT_LIST_LIMIT],
        overridden_total=len(overridden),
    )
