"""The JSON API under ``/api/v1``: settings with receipts, decisions, objections, snapshots, lineage, models.

Every route names what it needs (``scoped(...)``): a service token with the scope, a DPO, or, where
it is about one member, that member logged in. State-changing routes ridden by a session cookie
need the ``X-CSRF-Token`` header. Domain errors keep their status (400, 404, 409) and become
``{"detail": "..."}``; malformed requests are 422 with the field named.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, Response
from fastapi.security import HTTPBearer

from consentgate.decisions import Question, Verdict, decide_many, member_state, member_states
from consentgate.exceptions import InputError, NotFoundError, TaxonomyError
from consentgate.ledger.events import MAX_MEMBER_ID, LedgerEvent, Source
from consentgate.ledger.state import MemberState, ObjectionStatus
from consentgate.objections import file_objection, get_objection, list_objections
from consentgate.snapshots.lineage import member_lineage
from consentgate.snapshots.member_models import member_models
from consentgate.snapshots.proof import prove_member
from consentgate.snapshots.registry import ModelEntry, Registry, SnapshotEntry
from consentgate.snapshots.training_runs import register_trained_model
from consentgate.timeutil import format_instant, from_micros
from consentgate.web import member
from consentgate.web.accounts import Scope
from consentgate.web.auth import CSRFChecked, PortalDep, Principal, resolve_principal, scoped
from consentgate.web.schemas import (
    BatchDetail,
    ConflictPublic,
    DecisionBatch,
    DecisionBatchRequest,
    DecisionPublic,
    ErrorPublic,
    Instant,
    LastChange,
    MemberLineagePublic,
    MemberProofPublic,
    ModelCreate,
    ModelPublic,
    ModelRegistrationPublic,
    ModelsPublic,
    ObjectionCreate,
    ObjectionPublic,
    ObjectionReceipt,
    ObjectionsPublic,
    OverridePublic,
    PolicyRef,
    PurposeUsePublic,
    Receipt,
    ReceiptPublic,
    SettingChange,
    SettingPublic,
    SettingsPublic,
    SnapshotPublic,
    SnapshotsPublic,
    TextPublic,
    ValidationErrorPublic,
    VerdictBatch,
)
from consentgate.web.state import Portal

# Documents the bearer scheme in the OpenAPI document; ``resolve_principal`` does the checking.
_bearer = HTTPBearer(auto_error=False, description="A service token: `Authorization: Bearer cgt_…`.")

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "reference": {"type": "string", "description": "The id of the log entry (500 only)."},
    },
}
"""RFC 9457 problem documents: what the body limit (413) and the error boundary (500) answer."""
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorPublic, "description": "Bad input (the message names the field)."},
    401: {"model": ErrorPublic, "description": "No bearer token and no session."},
    403: {"model": ErrorPublic, "description": "Authenticated, but not allowed (scope, role or member)."},
    404: {"model": ErrorPublic, "description": "Unknown member, setting, objection or snapshot."},
    413: {
        "description": "The request body is larger than the server's limit (serve --max-body).",
        "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
    },
    422: {"model": ValidationErrorPublic, "description": "The request does not have the documented form."},
    500: {
        "description": "An unexpected failure; logged with the reference given (never a trace).",
        "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
    },
    503: {
        "description": "The ledger's database is down or locked; retry after Retry-After seconds.",
        "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
    },
    507: {
        "description": "The database or the disk is full: nothing was stored; try again later.",
        "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
    },
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorPublic, "description": "The Idempotency-Key was used for another request."},
}

router = APIRouter(prefix="/api/v1", responses=ERRORS, dependencies=[Depends(_bearer)])

MemberPath = Annotated[int, Path(ge=1, le=MAX_MEMBER_ID, description="Member id.")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[!-~]+$",
        description="Makes retries safe: the same key with the same request returns the first receipt; "
        "with another request it is a 409.",
    ),
]


def _source(principal: Principal) -> Source:
    if principal.kind == "member":
        return Source.member
    if principal.kind == "dpo":
        return Source.dpo
    return Source.system


def _idempotency(kind: str, member_id: int, key: str | None) -> str | None:
    """The ledger key for a client's Idempotency-Key: per member, so members' keys never collide."""
    return None if key is None else f"api:{kind}:{member_id}:{key}"


def _require_known(portal: Portal, member_id: int) -> MemberState:
    state = member_state(portal.ledger, member_id, portal.now())
    if not state.known:
        raise NotFoundError(f"member_id: member {member_id} is not in the ledger")
    return state


# --- settings -----------------------------------------------------------------------------------


def _last_change(event: LedgerEvent | None) -> LastChange | None:
    if event is None:
        return None
    return LastChange(seq=event.seq, effective_at=event.effective, source=event.source)


@router.get(
    "/members/{member_id}/settings",
    response_model=SettingsPublic,
    summary="Every setting of a member, with its value, default and the purposes it governs",
    tags=["settings"],
    dependencies=[scoped(Scope.settings_read, member_self=True)],
)
def get_settings(member_id: MemberPath, portal: PortalDep) -> SettingsPublic:
    at = portal.now()
    view = member.settings_view(portal, member_id, at)
    rows = [
        SettingPublic(
            key=row.key,
            label=TextPublic(en=row.setting.label.en, de=row.setting.label.de),
            group=str(row.setting.group),
            section=row.setting.section,
            kind=str(row.setting.kind),
            value=row.value,
            explicit=row.explicit is not None,
            default=row.default,
            last_change=_last_change(row.explicit),
            purposes=[
                PurposeUsePublic(
                    purpose=u.purpose, name=u.name, legal_basis=None if u.basis is None else str(u.basis)
                )
                for u in row.uses
            ],
        )
        for row in view.rows()
    ]
    policy = None if view.policy is None else PolicyRef(id=view.policy.id, version=view.policy.version)
    return SettingsPublic(member_id=member_id, at=at, region=view.region, policy=policy, settings=rows)


@router.put(
    "/members/{member_id}/settings/{key}",
    response_model=ReceiptPublic,
    summary="Switch a setting on or off; returns the ledger receipt",
    tags=["settings"],
    responses=CONFLICT,
    dependencies=[CSRFChecked],
)
def put_setting(
    member_id: MemberPath,
    key: Annotated[str, Path(max_length=100, pattern=r"^[a-z][a-z0-9_]*$", description="Setting key.")],
    change: SettingChange,
    portal: PortalDep,
    principal: Annotated[Principal, scoped(Scope.settings_write, member_self=True)],
    idempotency_key: IdempotencyKey = None,
) -> ReceiptPublic:
    if key not in portal.taxonomy.settings:
        raise NotFoundError(f"key: unknown setting {key!r}")
    try:
        portal.taxonomy.toggle(key)
    except TaxonomyError as exc:
        raise InputError(f"key: {exc}") from None
    event = member.change_setting(
        portal,
        member_id=member_id,
        key=key,
        value=change.value,
        actor=principal.actor,
        idempotency_key=_idempotency("setting", member_id, idempotency_key),
        source=_source(principal),
    )
    return ReceiptPublic(
        receipt=Receipt(
            seq=event.seq,
            hash=event.hash,
            prev_hash=event.prev_hash,
            member_id=event.member_id,
            key=event.key,
            value=event.value == "true",
            effective_at=event.effective,
            recorded_at=event.recorded,
            source=event.source,
            actor=event.actor,
            idempotency_key=event.idempotency_key,
        )
    )


# --- decisions ----------------------------------------------------------------------------------


@router.get(
    "/decisions",
    response_model=DecisionPublic,
    summary="May this member's data of this category be used for this purpose at this time? And why",
    tags=["decisions"],
    dependencies=[scoped(Scope.decisions_read)],
)
def get_decision(
    portal: PortalDep,
    member_id: Annotated[int, Query(ge=1, le=MAX_MEMBER_ID, description="Member id.")],
    category: Annotated[str, Query(min_length=1, max_length=200, description="Category key.")],
    purpose: Annotated[str, Query(min_length=1, max_length=200, description="Purpose key.")],
    at: Annotated[
        Instant | None,
        Query(description="ISO 8601 instant with offset (a bare date = 00:00Z); default: now."),
    ] = None,
) -> Response:
    state = member_state(portal.ledger, member_id, at or portal.now())
    return _json(portal.engine.decide_state(state, category, purpose).to_dict())


def _json(data: dict[str, Any]) -> Response:
    """A decision's JSON as ``Decision.to_dict`` (and ``consentgate explain --json``) gives it.

    Absent reason fields (``seq``, ``setting``, ``reference``) are left out, as in the CLI's output.
    """
    return Response(
        json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode(), media_type="application/json"
    )


@router.post(
    "/decisions",
    response_model=DecisionBatch | VerdictBatch,
    summary="Many decisions in one request (up to 10,000), answered in order",
    tags=["decisions"],
    dependencies=[scoped(Scope.decisions_read)],
)
def post_decisions(batch: DecisionBatchRequest, portal: PortalDep) -> Response:
    """Each member's state is read once per instant, all of them in a few queries.

    ``detail: verdict`` answers through :func:`decide_many`, one decision per class of members and
    (category, purpose). The answers are serialised by hand from :meth:`Decision.to_dict` and
    :meth:`Verdict.to_dict` (the shapes ``DecisionPublic`` and ``VerdictPublic`` document and the
    tests check): validating 10,000 of them again would triple the response time.
    """
    now = portal.now()
    questions = [
        Question(item.member_id, item.category, item.purpose, item.at or now) for item in batch.requests
    ]
    if batch.detail is BatchDetail.verdict:
        return _verdicts(questions, decide_many(portal.engine, portal.ledger, questions, now=now))
    wanted: dict[datetime, set[int]] = {}
    for question in questions:
        assert question.at is not None
        wanted.setdefault(question.at, set()).add(question.member_id)
    states = {
        (member_id, at): state
        for at, members in wanted.items()
        for member_id, state in member_states(portal.ledger, sorted(members), at).items()
    }
    answers: dict[tuple[int, datetime, str, str], dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for question in questions:
        assert question.at is not None
        key = (question.member_id, question.at, question.category, question.purpose)
        answer = answers.get(key)
        if answer is None:
            state = states[(question.member_id, question.at)]
            answer = answers[key] = portal.engine.decide_state(
                state, question.category, question.purpose
            ).to_dict()
        out.append(answer)
    return _json({"decisions": out})


def _verdicts(questions: list[Question], verdicts: list[Verdict]) -> Response:
    """``{"decisions": [VerdictPublic, ...]}``, each shared part encoded once, not once per item."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    asked: dict[tuple[str, str, datetime], str] = {}
    said: dict[int, str] = {}
    parts: list[str] = []
    for question, verdict in zip(questions, verdicts, strict=True):
        assert question.at is not None
        what = (question.category, question.purpose, question.at)
        head = asked.get(what)
        if head is None:
            head = asked[what] = (
                f'"category":{dumps(question.category)},"purpose":{dumps(question.purpose)},'
                f'"at":{dumps(format_instant(question.at))},'
            )
        tail = said.get(id(verdict))
        if tail is None:
            tail = said[id(verdict)] = dumps(verdict.to_dict())[1:]
        parts.append(f'{{"member_id":{question.member_id},{head}{tail}')
    body = '{"decisions":[' + ",".join(parts) + "]}"
    return Response(body.encode(), media_type="application/json")


# --- objections ---------------------------------------------------------------------------------


def _objection(status: ObjectionStatus, at: datetime) -> ObjectionPublic:
    return ObjectionPublic(
        reference=status.reference,
        member_id=status.member_id,
        purposes=list(status.purposes),
        grounds=status.grounds,
        received_at=status.received_at,
        due=status.due,
        extended_by_months=status.extension_months,
        status=str(status.outcome),
        automatic=status.automatic,
        reason=status.decision_reason,
        decided_at=None if status.decision is None else from_micros(status.decision.effective_at),
        overdue=status.overdue(at),
    )


def _objection_reader(request: Request) -> Principal:
    """objections:read for tokens; DPOs; members too, whose access the route narrows to their own."""
    principal = resolve_principal(request)
    if principal.kind == "anonymous":
        raise HTTPException(401, "authentication required: a bearer token or a session")
    if principal.kind == "token" and Scope.objections_read not in principal.scopes:
        raise HTTPException(403, f"this token lacks the scope {Scope.objections_read.value}")
    if principal.kind not in ("token", "dpo", "member"):
        raise HTTPException(403, f"needs a token with the scope {Scope.objections_read.value}")
    return principal


@router.get(
    "/members/{member_id}/objections",
    response_model=ObjectionsPublic,
    summary="A member's objections (Art. 21), by due date",
    tags=["objections"],
    dependencies=[scoped(Scope.objections_read, member_self=True)],
)
def get_member_objections(member_id: MemberPath, portal: PortalDep) -> ObjectionsPublic:
    state = _require_known(portal, member_id)
    statuses = sorted(state.objections.values(), key=lambda s: (s.due, s.reference))
    return ObjectionsPublic(objections=[_objection(s, state.at) for s in statuses])


@router.post(
    "/members/{member_id}/objections",
    response_model=ObjectionReceipt,
    status_code=201,
    summary="Object to purposes (Art. 21); processing for them is restricted at once",
    tags=["objections"],
    responses=CONFLICT,
    dependencies=[CSRFChecked],
)
def post_objection(
    member_id: MemberPath,
    body: ObjectionCreate,
    portal: PortalDep,
    principal: Annotated[Principal, scoped(Scope.objections_write, member_self=True)],
    idempotency_key: IdempotencyKey = None,
) -> ObjectionReceipt:
    for purpose in body.purposes:
        if purpose not in portal.taxonomy.purposes:
            raise InputError(f"purposes: unknown purpose {purpose!r}")
    statuses = file_objection(
        portal.ledger,
        portal.taxonomy,
        member_id=member_id,
        purposes=body.purposes,
        at=None,
        grounds=body.grounds,
        source=_source(principal),
        actor=principal.actor,
        idempotency_key=_idempotency("objection", member_id, idempotency_key),
    )
    now = portal.now()
    return ObjectionReceipt(objections=[_objection(s, now) for s in statuses])


@router.get(
    "/objections/{reference}",
    response_model=ObjectionPublic,
    summary="One objection by its reference (members: only their own)",
    tags=["objections"],
)
def get_objection_by_reference(
    reference: Annotated[
        str, Path(max_length=40, pattern=r"^[A-Za-z0-9-]+$", description="Reference, e.g. OBJ-1A2B3C4D5E.")
    ],
    portal: PortalDep,
    principal: Annotated[Principal, Depends(_objection_reader)],
) -> ObjectionPublic:
    status = get_objection(portal.ledger, reference)
    if principal.kind == "member" and status.member_id != principal.member_id:
        raise HTTPException(403, "a member may see only their own objections")
    return _objection(status, portal.now())


@router.get(
    "/objections",
    response_model=ObjectionsPublic,
    summary="All objections by due date (DPO and service tokens)",
    tags=["objections"],
    dependencies=[scoped(Scope.objections_read)],
)
def get_objections(
    portal: PortalDep,
    overdue: Annotated[bool, Query(description="Only objections past their due date.")] = False,
) -> ObjectionsPublic:
    now = portal.now()
    statuses = list_objections(portal.ledger, at=now, overdue_only=overdue)
    return ObjectionsPublic(objections=[_objection(s, now) for s in statuses])


# --- snapshots and lineage ----------------------------------------------------------------------


def _snapshot(entry: SnapshotEntry) -> SnapshotPublic:
    return SnapshotPublic(
        snapshot_id=entry.snapshot_id,
        kind=entry.kind,
        purpose=entry.purpose,
        as_of=entry.as_of,
        watermark=entry.watermark,
        policy=entry.policy_ref,
        engine=entry.engine,
        records=entry.records,
        members=entry.members,
        manifest_sha256=entry.manifest_sha256,
        registered_at=entry.registered_at,
    )


@router.get(
    "/snapshots",
    response_model=SnapshotsPublic,
    summary="Registered snapshots",
    tags=["lineage"],
    dependencies=[scoped(Scope.lineage_read)],
)
def get_snapshots(
    portal: PortalDep,
    purpose: Annotated[
        str | None,
        Query(max_length=200, pattern=r"^[a-z0-9._]+$", description="Only snapshots for this purpose."),
    ] = None,
) -> SnapshotsPublic:
    entries = Registry(portal.ledger).snapshots(purpose=purpose)
    return SnapshotsPublic(snapshots=[_snapshot(e) for e in entries])


@router.get(
    "/snapshots/{snapshot_id}",
    response_model=SnapshotPublic,
    summary="One registered snapshot",
    tags=["lineage"],
    dependencies=[scoped(Scope.lineage_read)],
)
def get_snapshot(
    snapshot_id: Annotated[
        str, Path(max_length=300, pattern=r"^[A-Za-z0-9._:-]+$", description="Snapshot id.")
    ],
    portal: PortalDep,
) -> SnapshotPublic:
    return _snapshot(Registry(portal.ledger).require(snapshot_id))


@router.get(
    "/members/{member_id}/lineage",
    response_model=MemberLineagePublic,
    summary="Where a member's data went: the snapshots and models that hold it",
    tags=["lineage"],
    dependencies=[scoped(Scope.lineage_read, member_self=True)],
)
def get_member_lineage(member_id: MemberPath, portal: PortalDep) -> dict[str, Any]:
    _require_known(portal, member_id)
    lineage = member_lineage(Registry(portal.ledger), member_id)
    trained = member_models(portal.ledger, portal.engine, member_id, lineage=lineage)
    return {**lineage.to_dict(), "trained_models": [m.to_dict() for m in trained]}


@router.get(
    "/snapshots/{snapshot_id}/members/{member_id}",
    response_model=MemberProofPublic,
    summary="Whether and why a member's data is in a snapshot, with the ledger evidence",
    tags=["lineage"],
)
def get_member_proof(
    snapshot_id: Annotated[
        str, Path(max_length=300, pattern=r"^[A-Za-z0-9._:-]+$", description="Snapshot id.")
    ],
    member_id: MemberPath,
    portal: PortalDep,
    principal: Annotated[Principal, scoped(Scope.lineage_read, member_self=True)],
) -> Response:
    """The proof of ``consentgate snapshot prove``, byte for byte the same JSON.

    A proof that does not check out is still a 200: its ``problems`` say what is wrong. A member sees
    only snapshots that hold their data; any other id is a 404 like an unknown one, so snapshots
    cannot be probed.
    """
    registry = Registry(portal.ledger)
    if principal.kind == "member" and registry.get(snapshot_id) is None:
        raise NotFoundError(f"no snapshot {snapshot_id!r} holds your data")
    proof = prove_member(
        registry=registry,
        ledger=portal.ledger,
        engine=portal.engine,
        snapshot_id=snapshot_id,
        member_id=member_id,
    )
    if principal.kind == "member" and not proof.included:
        raise NotFoundError(f"no snapshot {snapshot_id!r} holds your data")
    return _json(proof.to_dict())


# --- models -------------------------------------------------------------------------------------


def _model(entry: ModelEntry) -> ModelPublic:
    override = entry.override
    return ModelPublic(
        name=entry.name,
        snapshots=list(entry.snapshot_ids),
        note=entry.note,
        registered_at=entry.registered_at,
        trained_at=entry.trained_at,
        watermark=entry.watermark,
        override=None
        if override is None
        else OverridePublic(reason=override.reason, by=override.by, members=override.members),
    )


def _registrant(principal: Principal) -> str:
    """Who registered: ``dpo:<username>`` or ``token:<token name>`` (the override records it)."""
    return f"{principal.kind}:{principal.username}"


@router.get(
    "/models",
    response_model=ModelsPublic,
    summary="Registered models, with their training time and any override of a debt",
    tags=["lineage"],
    dependencies=[scoped(Scope.lineage_read)],
)
def get_models(portal: PortalDep) -> ModelsPublic:
    return ModelsPublic(models=[_model(m) for m in Registry(portal.ledger).models()])


@router.post(
    "/models",
    response_model=ModelRegistrationPublic,
    status_code=201,
    summary="Register a trained model; refused while its snapshots hold members in debt at its training time",
    tags=["lineage"],
    responses={
        200: {"model": ModelRegistrationPublic, "description": "The identical registration already exists."},
        409: {
            "model": ConflictPublic,
            "description": "Refused: at the training time its snapshots hold members who had opted out or "
            "objected (``count`` says how many; refresh the snapshots, or a DPO overrides with "
            "``accept_debt``), or the name is registered with other snapshots.",
        },
    },
    dependencies=[CSRFChecked],
)
def post_model(
    body: ModelCreate,
    response: Response,
    portal: PortalDep,
    principal: Annotated[Principal, scoped(Scope.models_write)],
) -> ModelRegistrationPublic:
    """The check of ``consentgate model register``: an opt-out acts going forward.

    No model may be registered as trained on a member's data after their opt-out, unless a DPO
    records an override with its reason (a service token may not decide that exception).

    Registering the same name with the same snapshots again is a 200 with the model as registered
    first: retries are safe without an Idempotency-Key.
    """
    if body.accept_debt is not None and principal.kind != "dpo":
        raise HTTPException(
            403, "accept_debt: an override of a debt needs the DPO role; a service token may not give one"
        )
    registration = register_trained_model(
        portal.ledger,
        portal.engine,
        body.name,
        body.snapshots,
        trained_at=body.trained_at,
        accept_debt=body.accept_debt,
        actor=_registrant(principal),
        note=body.note,
        override_hint="a DPO registers it anyway with `accept_debt` set to the reason (recorded with"
        " every member it covers and shown in the DPO console and on each of those members' pages)",
    )
    if not registration.created:
        response.status_code = 200
    return ModelRegistrationPublic(created=registration.created, model=_model(registration.model))
