"""``consentgate synth``: a synthetic network (DESIGN §6) and a matching consent history.

Everything comes from ``np.random.default_rng`` streams keyed by (seed, part, chunk), so the same
arguments give byte-identical files and the same ledger events, and each chunk stands alone: records
are written by two threads, one row group at a time, so memory stays bounded whatever ``--records``
is. Idempotency keys are ``synth:{seed}:m:{member}:…``: re-running into a ledger appends nothing.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from consentgate.exceptions import InputError
from consentgate.ledger.events import EventBatch, EventKind, Source
from consentgate.ledger.state import objections_from
from consentgate.ledger.store import Ledger
from consentgate.objections import decide_objection, extend_objection, file_objection
from consentgate.taxonomy import Taxonomy
from consentgate.timeutil import from_micros as _at
from consentgate.timeutil import parse_instant, to_micros

Progress = Callable[[str, int, int], None]
"""(phase, done, total) for phases ``ledger`` (members), ``objections`` and ``records``; never overlapping."""

DAY, SECOND, NO_BIRTH = 86_400_000_000, 1_000_000, -(1 << 30)
FILE_ROWS, GROUP_ROWS, GROUP_BYTES, MEMBER_CHUNK = 5_000_000, 1_000_000, 128 << 20, 100_000
RECORDS = pa.schema(
    [
        ("record_id", pa.int64()),
        ("member_id", pa.int64()),
        ("category", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("payload", pa.string()),
    ]
)
# Snappy on random text costs twice the rest of the write and barely halves it: payload stays plain.
COMPRESSION = {name: "none" if name == "payload" else "snappy" for name in RECORDS.names}
# (region, share in %, weighted countries: the region's other countries get weight 1)
MIX: tuple[tuple[str, int, dict[str, int]], ...] = (
    ("ROW", 55, {"US": 30, "IN": 20, "BR": 10, "MX": 5, "NG": 4, "AU": 5, "JP": 4, "ID": 4, "ZA": 3}),
    ("EEA", 25, {"DE": 20, "FR": 18, "IT": 12, "ES": 12, "NL": 10, "PL": 8, "SE": 5, "IE": 4, "NO": 3}),
    ("UK", 7, {}),
    ("CH", 1, {}),
    ("CA", 6, {}),
    ("HK", 1, {}),
    ("CN", 1, {}),
)
GDPR = ("EEA", "UK", "CH")
CATEGORY_WEIGHT = {"content": 6.0, "profile": 3.0, "activity": 2.0, "groups": 1.5, "messages": 1.5}
VOCABULARY = (
    "team project data model skills growth hiring role manager launch product customer market research "
    "design cloud sales network career learning leadership strategy engineer analyst open remote update "
    "share congrats excited proud new job post article event webinar insight we our the a of to and in "
    "for with on at from is are was will this that today week"
)
WORDS = VOCABULARY.split()


def _us(text: str) -> int:
    return to_micros(parse_instant(text))


LAUNCH, REG_END, SEPT24, URGED = _us("2003-05-05"), _us("2025-11-01"), _us("2024-09-18"), _us("2025-09-01")
CHANGE, HISTORY_END, RECORDS_END = _us("2025-11-03"), _us("2026-07-01"), _us("2026-10-01")
# Deliberate ties: some opt-outs land on exactly these instants (the change, and the µs before it).
TIES = np.array([CHANGE, CHANGE - 1, _us("2025-10-31T12:00:00Z")], dtype=np.int64)
GPC_KEYS = ("ads_offsite", "ads_data_from_others", "ads_affiliate_sharing")
GENAI = "genai_improvement"
KINDS = (EventKind.member_registered, EventKind.member_fact, EventKind.setting_changed)


@dataclass(frozen=True)
class SynthResult:
    members: int
    records: int
    events_appended: int
    events_present: int
    objections: int
    files: int
    bytes: int


@dataclass(frozen=True)
class Network:
    """The members as columns: index i is member ``first_id + i``."""

    countries: np.ndarray  # ISO codes (object array)
    regions: np.ndarray  # region keys (object array)
    registered: np.ndarray  # µs, whole seconds
    birth: np.ndarray  # days since the epoch, NO_BIRTH when unknown
    minor: np.ndarray  # believed_minor: -1 unknown, 0 false, 1 true
    order: np.ndarray  # a permutation: special roles first, regular members after, heavy posters last
    regular: int  # where the regular members start in ``order``
    settings: tuple[str, ...]  # the ads_* toggles, then genai_improvement
    first_id: int


def _span(rng: np.random.Generator, low: np.ndarray, high: np.ndarray, power: float = 1.0) -> np.ndarray:
    """Instants in [low, high) in whole seconds; a power above 1 leans towards ``low``."""
    instants: np.ndarray = low + (rng.random(len(low)) ** power * np.maximum(high - low, 0)).astype(np.int64)
    return instants // SECOND * SECOND


def _members(taxonomy: Taxonomy, n: int, seed: int, first_id: int) -> Network:
    rng = np.random.default_rng([seed, 0])
    codes: list[str] = []
    weights: list[float] = []
    for region, share, heavy in MIX:
        listed = taxonomy.regions[region].countries or tuple(heavy)
        w = np.array([heavy.get(c, 1) for c in listed], dtype=float)
        codes += listed
        weights += list(share * w / w.sum())
    pick = rng.choice(len(codes), size=n, p=np.array(weights) / sum(weights))
    regions = np.array([taxonomy.region_of(c) for c in codes], dtype=object)[pick]
    reg = LAUNCH + (rng.random(n) ** 0.6 * (REG_END - LAUNCH)).astype(np.int64) // SECOND * SECOND
    birth = reg // DAY - ((18 + 45 * rng.random(n) ** 1.5) * 365.25).astype(np.int64)  # adults at joining
    birth[rng.random(n) < 0.25] = NO_BIRTH
    minor = np.where(rng.random(n) < 0.03, 0, -1)
    order = rng.permutation(n)
    # Fixed shares of the permutation, at least a few each even in small networks: members who turn
    # 18 between 2025-10-01 and 2025-11-04, minors on 2025-11-04, presumed minors without a birth date.
    sizes = np.minimum([max(3, round(0.003 * n)), max(4, round(0.02 * n)), max(2, round(0.005 * n))], n // 4)
    turning, minors, presumed = np.split(order[: sizes.sum()], np.cumsum(sizes)[:2])
    for group, low, high in (
        (turning, _us("2007-10-01") // DAY, _us("2007-11-05") // DAY),
        (minors, _us("2007-11-05") // DAY, _us("2009-10-01") // DAY),
    ):
        birth[group] = rng.integers(low, high, len(group))
        joined = (birth[group] + 5844) * DAY  # sixteen at the earliest
        reg[group] = _span(rng, joined, np.full(len(group), REG_END))
        minor[group] = -1
    birth[presumed], minor[presumed] = NO_BIRTH, 1
    keys = (*(k for k in taxonomy.settings if k.startswith("ads_")), GENAI)
    return Network(
        np.array(codes, object)[pick], regions, reg, birth, minor, order, int(sizes.sum()), keys, first_id
    )


def _members_table(net: Network) -> pa.Table:
    return pa.table(
        {
            "member_id": pa.array(np.arange(len(net.birth), dtype=np.int64) + net.first_id),
            "country": pa.array(net.countries, pa.string()),
            "birth_date": pa.array(net.birth.astype(np.int32), pa.date32(), mask=net.birth == NO_BIRTH),
            "believed_minor": pa.array(net.minor == 1, pa.bool_(), mask=net.minor < 0),
        }
    )


def _settings(net: Network, start: int, stop: int, seed: int, chunk: int) -> list[np.ndarray]:
    """Setting changes of members ``start:stop``: [member index, setting, on, µs, gpc], by member and time."""
    rng = np.random.default_rng([seed, 1, chunk])
    n, reg, region = stop - start, net.registered[start:stop], net.regions[start:stop]
    gdpr = np.isin(region, GDPR)
    # Gen-AI off before the change (in GDPR regions mostly in Sep-Oct 2025, as regulators urged) or after.
    out = np.flatnonzero(rng.random(n) < np.where(gdpr, 0.3, np.where(region == "CN", 0.05, 0.22)))
    before = rng.random(len(out)) < np.where(gdpr[out], 0.6, 0.45)
    urged = gdpr[out] & (rng.random(len(out)) < 0.75)
    low = np.maximum(np.where(before, np.where(urged, URGED, SEPT24), CHANGE), reg[out] + DAY)
    off = _span(rng, low, np.where(before, CHANGE, HISTORY_END), 1.5)
    tie = TIES[rng.integers(0, len(TIES), len(out))]
    off = np.where((rng.random(len(out)) < 0.1) & (tie > reg[out] + DAY), tie, off)
    back = rng.random(len(out)) < 0.15  # and on again later
    on = _span(rng, off[back] + SECOND, np.full(back.sum(), HISTORY_END))
    # Advertising switches off and on at random times, the three group/off-site ones more often.
    ads = np.repeat(np.arange(n), rng.poisson(1.1, n))
    weight = np.array([3.0 if k in GPC_KEYS else 1.0 for k in net.settings[:-1]])
    key = rng.choice(len(weight), size=len(ads), p=weight / weight.sum())
    when = _span(rng, reg[ads] + DAY, np.full(len(ads), HISTORY_END))
    # Global Privacy Control: three switches off at one instant, for some members outside Europe.
    gpc = np.flatnonzero((region == "ROW") & (rng.random(n) < 0.04))
    gpc_at = _span(rng, np.maximum(reg[gpc], _us("2020-01-01")) + DAY, np.full(len(gpc), HISTORY_END))
    genai = len(net.settings) - 1
    parts = [
        (out, np.full(len(out), genai), np.zeros(len(out), bool), off, False),
        (out[back], np.full(len(on), genai), np.ones(len(on), bool), on, False),
        (ads, key, rng.random(len(ads)) < 0.3, when, False),
        *(
            (gpc, np.full(len(gpc), net.settings.index(k)), np.zeros(len(gpc), bool), gpc_at, True)
            for k in GPC_KEYS
        ),
    ]
    cols = [np.concatenate([p[i] for p in parts]) for i in range(4)]
    cols.append(np.concatenate([np.full(len(p[0]), p[4]) for p in parts]))
    ordered = np.lexsort((cols[1], cols[3], cols[0]))
    return [c[ordered] for c in cols]


def _member_batch(net: Network, start: int, stop: int, seed: int, chunk: int) -> EventBatch:
    """Registration and facts of members ``start:stop`` (effective at registration), then their settings.

    Kinds, keys and values are those of ``ledger.commands.add_member_events``; the keys are ours.
    """
    batch, src, first = EventBatch.empty(), str(Source.import_), net.first_id + start
    add, pre, reg_, fact, setting = batch.add, f"synth:{seed}:m:", *KINDS
    births = np.datetime_as_string(net.birth[start:stop].astype("datetime64[D]")).tolist()
    known = (net.birth[start:stop] != NO_BIRTH).tolist()
    columns = (net.countries[start:stop], net.registered[start:stop], net.minor[start:stop])
    for i, (country, at, minor) in enumerate(zip(*(c.tolist() for c in columns), strict=True)):
        member = first + i
        add(member, reg_, "registered", "true", at, src, "synth", f"{pre}{member}:registered")
        facts = [("country", country)] + [("birth_date", births[i])] * known[i]
        facts += [("believed_minor", "true" if minor == 1 else "false")] * (minor >= 0)
        for name, value in facts:
            add(member, fact, name, value, at, src, "synth", f"{pre}{member}:{name}")
    who, key, on, when, gpc = (c.tolist() for c in _settings(net, start, stop, seed, chunk))
    nth = 0
    for j, (m, k, v, t, g) in enumerate(zip(who, key, on, when, gpc, strict=True)):
        nth = nth + 1 if j and who[j - 1] == m else 0  # the member's n-th setting change
        # GPC signals are recorded as imports (actor synth:gpc): a gpc event is never back-dated.
        actor = "synth:gpc" if g else "synth"
        add(
            first + m,
            setting,
            net.settings[k],
            "true" if v else "false",
            t,
            src,
            actor,
            f"{pre}{first + m}:s:{nth}",
        )
    return batch


def _load(ledger: Ledger, net: Network, seed: int, progress: Progress) -> int:
    """Append members and settings in chunks of members (one transaction each); returns events skipped."""
    n, present = len(net.birth), 0
    for chunk, start in enumerate(range(0, n, MEMBER_CHUNK)):
        stop = min(n, start + MEMBER_CHUNK)
        batch = _member_batch(net, start, stop, seed, chunk)

        def within(done: int, start: int = start, stop: int = stop, size: int = max(len(batch), 1)) -> None:
            progress("ledger", start + (stop - start) * done // size, n)

        present += ledger.append_bulk(batch, progress=within)[1]
        progress("ledger", stop, n)
    return present


GROUNDS = "I do not want my profile and posts used to train AI models."
EXTENSION = "Several teams hold the data; we need more time."
REASONS = {True: "The member's interests prevail.", False: "Public profile data only; grounds in DPIA-7."}


def _objections(ledger: Ledger, taxonomy: Taxonomy, net: Network, seed: int, progress: Progress) -> int:
    """File Art. 21 objections (~0.2 %, GDPR regions first) through the real workflow, at past instants.

    Stories by index mod 6: received before the change and left pending, upheld after it, rejected
    before it; received after it and upheld, extended then rejected, left pending.
    """
    rng = np.random.default_rng([seed, 3])
    regular = net.order[net.regular :]
    candidates = regular[np.argsort(~np.isin(net.regions[regular], GDPR), kind="stable")]
    count = min(len(candidates), max(6, round(0.002 * len(net.birth))))
    draws = rng.random((count, 2))  # drawn up front: a re-run takes the same path whatever is stored
    known = objections_from(ledger.objection_events())
    for k, index in enumerate(candidates[:count].tolist()):
        story, member, joined = k % 6, net.first_id + index, int(net.registered[index]) + DAY
        low = max(joined, {0: URGED, 1: CHANGE - 28 * DAY, 2: URGED}.get(story, CHANGE))
        high = CHANGE if story < 3 else HISTORY_END - 60 * DAY
        received = low + int(draws[k, 0] * (high - low)) // SECOND * SECOND
        [status, *_] = file_objection(
            ledger,
            taxonomy,
            member_id=member,
            purposes=["genai.training", *(["ads.personalization"] if k % 3 == 1 else [])],
            at=_at(received),
            grounds=GROUNDS,
            source=Source.dpo,
            actor="synth",
            idempotency_key=f"synth:{seed}:m:{member}:objection:{k}",
        )
        ref, before = status.reference, known.get(status.reference)
        if story == 4 and (before is None or before.extension is None):
            extend_objection(ledger, reference=ref, months=1, reason=EXTENSION, at=_at(received + 20 * DAY))
        decided = {
            1: CHANGE + int(draws[k, 1] * 20 * DAY),
            2: received + int(draws[k, 1] * (CHANGE - received)),
            3: received + 5 * DAY + int(draws[k, 1] * 20 * DAY),
            4: received + 45 * DAY,
        }.get(story)
        if decided is not None and (before is None or before.decision is None):
            uphold = story in (1, 3)
            decide_objection(ledger, reference=ref, uphold=uphold, reason=REASONS[uphold], at=_at(decided))
        progress("objections", k + 1, count)
    return count


@dataclass(frozen=True)
class _Texts:
    """What every record chunk draws from: category keys with a quantile table, a pool of words."""

    keys: pa.Array
    table: np.ndarray  # 4096 category indices in proportion to the weights: one gather per record
    windows: np.ndarray  # every payload-sized slice of an ASCII pool of words (so any slice is UTF-8)
    starts: np.ndarray  # the slices that start at a word

    @classmethod
    def of(cls, taxonomy: Taxonomy, seed: int, size: int) -> _Texts:
        keys = list(taxonomy.categories)
        weight = np.array([CATEGORY_WEIGHT.get(k.split(".")[0], 0.5) for k in keys])
        table = np.searchsorted(np.cumsum(weight) / weight.sum(), (np.arange(4096) + 0.5) / 4096)
        rng = np.random.default_rng([seed, 4])
        text = " ".join(rng.choice(WORDS, max(1 << 16, size))).encode() + b" " * size
        pool = np.frombuffer(text, np.uint8)
        starts = np.flatnonzero(np.concatenate([[True], pool[:-1] == 32]) & (pool != 32))
        windows = np.lib.stride_tricks.sliding_window_view(pool, size)
        return cls(pa.array(keys), np.minimum(table, len(keys) - 1), windows, starts[starts < len(windows)])


def _records(rng: np.random.Generator, net: Network, texts: _Texts, first: int, n: int) -> pa.Table:
    # Skewed posting: u**2 picks the end of ``order`` (regular members) most, so some post a lot.
    who = net.order[len(net.order) - 1 - (len(net.order) * rng.random(n) ** 2).astype(np.int64)]
    reg = net.registered[who]
    created = reg + (rng.random(n) ** 0.7 * (RECORDS_END - reg)).astype(np.int64)  # never before joining
    category = texts.table[rng.integers(0, len(texts.table), n)]
    head = max(0, min(n, len(texts.keys) - first))
    category[:head] = np.arange(first, first + head)  # the first records name every category once
    size = texts.windows.shape[1]
    payload = texts.windows[texts.starts[rng.integers(0, len(texts.starts), n)]]
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(size)
    return pa.Table.from_arrays(
        [
            pa.array(np.arange(first + 1, first + n + 1, dtype=np.int64)),
            pa.array(who + net.first_id),
            pc.take(texts.keys, pa.array(category)),
            pa.array(created).view(RECORDS.field("created_at").type),
            pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(payload)]),
        ],
        schema=RECORDS,
    )


def _write_records(
    folder: Path, net: Network, texts: _Texts, total: int, seed: int, progress: Progress
) -> None:
    """Files of FILE_ROWS records, two at a time; chunk j of file f draws from stream (seed, 2, f, j)."""
    group = max(1, min(GROUP_ROWS, GROUP_BYTES // max(texts.windows.shape[1], 1)))
    lock, done = threading.Lock(), [0]

    def write(number: int) -> None:
        first, stop = number * FILE_ROWS, min(total, (number + 1) * FILE_ROWS)
        stats = [n for n in RECORDS.names if n != "payload"]
        with pq.ParquetWriter(
            folder / f"part-{number:05d}.parquet",
            RECORDS,
            compression=COMPRESSION,
            use_dictionary=["category"],
            write_statistics=stats,
        ) as writer:
            for j, start in enumerate(range(first, stop, group)):
                n = min(group, stop - start)
                writer.write_table(
                    _records(np.random.default_rng([seed, 2, number, j]), net, texts, start, n),
                    row_group_size=n,
                )
                with lock:
                    done[0] += n
                    progress("records", done[0], total)
            if first == stop:  # no records: one empty file still says what the schema is
                writer.write_table(RECORDS.empty_table())

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(write, range(max(1, -(-total // FILE_ROWS)))))


def check_arguments(out: Path, members: int, records: int, payload_bytes: int) -> None:
    """Refuse bad sizes and a folder that already holds a network (before anything is opened)."""
    for option, value, least in (
        ("--members", members, 1),
        ("--records", records, 0),
        ("--payload-bytes", payload_bytes, 0),
    ):
        if value < least:
            raise InputError(f"{option}: must be at least {least}, got {value}")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} is a file, not a folder")
    records_dir = out / "records"
    if (
        (out / "members.parquet").exists()
        or (records_dir.exists() and not records_dir.is_dir())
        or any(records_dir.glob("*"))
    ):
        raise InputError(
            f"--out: {out} already holds a network (members.parquet or records/); choose a new folder"
        )


def synthesize(
    out: Path,
    taxonomy: Taxonomy,
    *,
    members: int,
    records: int,
    seed: int = 0,
    payload_bytes: int = 32,
    first_member_id: int = 1,
    ledger: Ledger | None = None,
    progress: Progress | None = None,
) -> SynthResult:
    """Write the network into ``out`` and, given a ledger, load its members, settings and objections.

    The ledger goes first: it is idempotent, so after a failure anywhere a re-run into a new folder
    completes it. The files are written into a hidden folder and moved into place at the end, so a
    failed run leaves no half network behind.
    """
    check_arguments(out, members, records, payload_bytes)
    report = progress or (lambda phase, done, total: None)
    net = _members(taxonomy, members, seed, first_member_id)
    appended = present = objections = 0
    if ledger is not None:
        head = ledger.watermark()
        present = _load(ledger, net, seed, report)
        objections = _objections(ledger, taxonomy, net, seed, report)
        appended = ledger.watermark() - head
    partial = out / ".synth-partial"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "records").mkdir(parents=True)
    pq.write_table(_members_table(net), partial / "members.parquet", row_group_size=GROUP_ROWS)
    _write_records(partial / "records", net, _Texts.of(taxonomy, seed, payload_bytes), records, seed, report)
    (partial / "records").replace(out / "records")  # an empty records/ is replaced
    (partial / "members.parquet").replace(out / "members.parquet")
    partial.rmdir()
    files = [out / "members.parquet", *sorted((out / "records").glob("part-*.parquet"))]
    return SynthResult(
        members, records, appended, present, objections, len(files), sum(f.stat().st_size for f in files)
    )
