"""The bad-input corpus (``tests/corpus/*.yaml``): every case on SQLite and on PostgreSQL.

Each case must end in its exit status or HTTP status and say its words, with no traceback, no exit
status 70, no 5xx, the security headers on every response, and nothing changed when refused
(``runner.problems``). Run ``python -m tests.corpus.runner`` to see what each case answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.corpus import runner
from tests.helpers import pg_schema_url

CASES = runner.load_cases()


def test_the_corpus_is_large_and_covers_every_edge() -> None:
    areas = {case.area for case in CASES}
    assert len(CASES) >= 150
    assert areas == {"imports", "policies", "snapshot_data", "options", "http"}
    assert sum(case.http is not None for case in CASES) >= 40
    assert all(case.about for case in CASES)
    # most cases are refusals, and every refusal says what was wrong
    refused = [c for c in CASES if (c.exit or 0) != 0 or (c.status or 0) >= 400]
    assert len(refused) >= 200
    assert all(c.says for c in refused), [c.id for c in refused if not c.says]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[runner.World]:
    root = tmp_path_factory.mktemp(f"corpus-{request.param}")
    with runner.cheap_hashing():
        if request.param == "sqlite":
            made = runner.make_world(f"sqlite:///{root / 'ledger.db'}", root / "world")
            yield made
            made.ledger.close()
        else:
            with pg_schema_url("cg_corpus") as url:
                made = runner.make_world(url, root / "world")
                yield made
                made.ledger.close()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case(case: runner.Case, world: runner.World, tmp_path: Path) -> None:
    with runner.cheap_hashing():
        outcome = runner.run_case(case, world, tmp_path / "case")
    wrong = runner.problems(case, outcome)
    assert not wrong, f"{case.id} ({case.about}): {'; '.join(wrong)}\n{outcome.text[:2000]}"
