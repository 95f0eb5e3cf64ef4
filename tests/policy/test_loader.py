"""Policy files: schema and taxonomy validation with clear errors, the built-ins, the timeline, diffs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from consentgate.exceptions import NotFoundError, PolicyValidationError, TimestampError
from consentgate.policy import (
    LegalBasis,
    Policy,
    Timeline,
    builtin_policies,
    diff_policies,
    load_policy_file,
    load_timeline,
)
from tests.conftest import at

FIXTURES = Path(__file__).parent / "fixtures"
PASSING = sorted(FIXTURES.glob("passing_*.yaml"))
FAILING = sorted(FIXTURES.glob("failing_*.yaml"))
EXPECT = "# expect: "


def _expected_problem(path: Path) -> str:
    first = path.read_text("utf-8").splitlines()[0]
    assert first.startswith(EXPECT), f"{path.name}: first line must be '{EXPECT}<problem text>'"
    return first[len(EXPECT) :]


def _builtin(policy_id: str) -> Policy:
    [policy] = [p for p in builtin_policies() if p.id == policy_id]
    return policy


# -- fixtures that must load --------------------------------------------------------------------


@pytest.mark.parametrize("path", PASSING, ids=lambda p: p.name)
def test_passing_fixture_loads(path: Path) -> None:
    """Every passing_*.yaml fixture is a valid policy with at least one purpose."""
    policy = load_policy_file(path)
    assert isinstance(policy, Policy)
    assert policy.purposes
    assert policy.effective_from.utcoffset() is not None


def test_required_passing_fixtures_exist() -> None:
    """The minimal, x-anchors and category_basis fixtures are present (so the suite cannot go vacuous)."""
    names = {p.name for p in PASSING}
    assert {"passing_minimal.yaml", "passing_anchors.yaml", "passing_category_basis.yaml"} <= names


def test_minimal_policy_has_the_documented_defaults() -> None:
    """Fields left out take the schema's defaults: minors excluded, no never-used, no settings."""
    policy = load_policy_file(FIXTURES / "passing_minimal.yaml")
    rule = policy.purposes["genai.training"]
    assert policy.ref == "minimal@1"
    assert rule.exclude_minors is True
    assert rule.never_used == ()
    assert rule.regions["ROW"].controlled_by == ()
    assert policy.options.exclude_unknown_age is False


def test_x_anchors_are_resolved_and_dropped() -> None:
    """Aliases to x-anchors expand to the anchored lists; the x- key itself is not part of the policy."""
    policy = load_policy_file(FIXTURES / "passing_anchors.yaml")
    rule = policy.purposes["genai.training"]
    assert rule.categories == ("profile.skills", "content.posts")
    assert rule.never_used == ("messages.private", "jobs.salary")
    assert rule.regions["EEA"] == rule.regions["UK"]
    assert rule.regions["EEA"].legal_basis is LegalBasis.legitimate_interest
    assert rule.regions["EEA"].controlled_by == ("genai_improvement",)
    assert not any(key.startswith("x-") for key in policy.model_dump())


def test_category_basis_overrides_the_region_basis_for_named_categories() -> None:
    """category_basis gives inferred data its own basis (consent); other categories keep the region's."""
    policy = load_policy_file(FIXTURES / "passing_category_basis.yaml")
    eea = policy.purposes["ads.personalization"].regions["EEA"]
    assert eea.basis_for("inferred.interests") is LegalBasis.consent
    assert eea.basis_for("profile.skills") is LegalBasis.legitimate_interest


def test_effective_from_with_an_offset_is_normalised_to_utc() -> None:
    """2026-03-01T01:00:00+01:00 is read as the same instant in UTC (2026-03-01T00:00:00Z)."""
    policy = load_policy_file(FIXTURES / "passing_category_basis.yaml")
    assert policy.effective_from == datetime(2026, 3, 1, tzinfo=UTC)
    assert policy.effective_from.utcoffset() == UTC.utcoffset(None)


# -- fixtures that must be refused --------------------------------------------------------------


@pytest.mark.parametrize("path", FAILING, ids=lambda p: p.name)
def test_failing_fixture_is_refused_with_its_exact_problem(path: Path) -> None:
    """A failing_*.yaml fixture raises PolicyValidationError naming the file and its expected problem."""
    expected = _expected_problem(path)
    with pytest.raises(PolicyValidationError) as caught:
        load_policy_file(path)
    assert expected in caught.value.problems, caught.value.problems
    assert str(caught.value).startswith(str(path))
    assert caught.value.source == str(path)


def test_required_failing_fixtures_exist() -> None:
    """Every validation case the loader must catch has a fixture (so the suite cannot go vacuous)."""
    names = {p.name.removeprefix("failing_").removesuffix(".yaml") for p in FAILING}
    assert {
        "version_type",
        "missing_effective_from",
        "naive_effective_from",
        "unknown_legal_basis",
        "unknown_category",
        "unknown_setting",
        "setting_not_controlling",
        "unknown_region",
        "in_scope_and_never_used",
        "extra_field",
        "yaml_syntax",
        "top_level_list",
        "category_basis_out_of_scope",
    } <= names


def test_the_error_message_lists_every_problem_under_the_file_name(tmp_path: Path) -> None:
    """str(error) is 'FILE: invalid policy' followed by one '  - problem' line per problem."""
    path = tmp_path / "two-problems.yaml"
    path.write_text(
        "id: two\nversion: 1\ntitle: t\neffective_from: 2026-01-01T00:00:00Z\n"
        "purposes:\n  genai.training:\n    categories: [profile.skilz]\n"
        "    regions:\n      EU: {legal_basis: notice}\n",
        "utf-8",
    )
    with pytest.raises(PolicyValidationError) as caught:
        load_policy_file(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{path}: invalid policy"
    assert lines[1:] == [f"  - {p}" for p in caught.value.problems]
    assert len(caught.value.problems) == 2


def test_a_missing_file_is_a_validation_error_naming_it(tmp_path: Path) -> None:
    """A policy file that cannot be read is reported with its path, not as an OSError."""
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(PolicyValidationError) as caught:
        load_policy_file(path)
    assert caught.value.problems == ["cannot read file (No such file or directory)"]
    assert str(caught.value).startswith(str(path))


# -- the built-in policies and the timeline -----------------------------------------------------


def test_both_builtin_policies_load() -> None:
    """The shipped linkedin-2024-09 (v1, 2024-09-18) and linkedin-2025-11 (v2, 2025-11-03) validate."""
    policies = builtin_policies()
    assert [(p.id, p.version, p.effective_from) for p in policies] == [
        ("linkedin-2024-09", 1, at("2024-09-18T00:00:00Z")),
        ("linkedin-2025-11", 2, at("2025-11-03T00:00:00Z")),
    ]
    assert all("genai.training" in p.purposes for p in policies)


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        ("2024-09-17T23:59:59.999999Z", None),
        ("2020-01-01T00:00:00Z", None),
        ("2024-09-18T00:00:00Z", "linkedin-2024-09"),
        ("2025-01-01T12:00:00Z", "linkedin-2024-09"),
        ("2025-11-02T23:59:59Z", "linkedin-2024-09"),
        ("2025-11-02T23:59:59.999999Z", "linkedin-2024-09"),
        ("2025-11-03T00:00:00Z", "linkedin-2025-11"),
        ("2025-11-03T00:59:59+01:00", "linkedin-2024-09"),
        ("2030-01-01T00:00:00Z", "linkedin-2025-11"),
    ],
)
def test_timeline_picks_the_version_in_force(instant: str, expected: str | None) -> None:
    """The latest policy whose effective_from is not after T decides for T; none before the first."""
    policy = load_timeline().in_force(at(instant))
    assert (None if policy is None else policy.id) == expected


def test_timeline_refuses_a_naive_instant() -> None:
    """Asking which policy is in force at a time without offset is an error, not a guess."""
    with pytest.raises(TimestampError):
        load_timeline().in_force(datetime(2025, 11, 3))


def test_two_policies_with_the_same_effective_from_are_refused(tmp_path: Path) -> None:
    """An operator policy starting at the same instant as a built-in makes the timeline ambiguous."""
    text = (FIXTURES / "passing_minimal.yaml").read_text("utf-8")
    (tmp_path / "clash.yaml").write_text(
        text.replace("2026-01-01T00:00:00Z", "2025-11-03T00:00:00Z"), "utf-8"
    )
    with pytest.raises(PolicyValidationError) as caught:
        load_timeline([tmp_path])
    assert caught.value.source == "minimal@1"
    assert caught.value.problems == [
        "effective_from: same instant as linkedin-2025-11@2; the timeline would be ambiguous"
    ]


def test_the_same_id_and_version_twice_is_refused() -> None:
    """Two policies with one id@version cannot both be on the timeline."""
    policy = _builtin("linkedin-2024-09")
    later = policy.model_copy(update={"effective_from": at("2024-10-01T00:00:00Z")})
    with pytest.raises(PolicyValidationError) as caught:
        Timeline([policy, later])
    assert caught.value.problems == ["the same id and version is defined twice"]


def test_an_operator_policy_joins_the_timeline(tmp_path: Path) -> None:
    """A valid policy in a --policy-dir folder takes over from its effective_from."""
    (tmp_path / "mine.yaml").write_bytes((FIXTURES / "passing_minimal.yaml").read_bytes())
    timeline = load_timeline([tmp_path])
    assert [p.ref for p in timeline.policies] == ["linkedin-2024-09@1", "linkedin-2025-11@2", "minimal@1"]
    before, after = timeline.in_force(at("2025-12-31T23:59:59Z")), timeline.in_force(at("2026-01-01"))
    assert before is not None and before.ref == "linkedin-2025-11@2"
    assert after is not None and after.ref == "minimal@1"


def test_timeline_get_finds_by_id_and_version() -> None:
    """get() resolves 'id' and 'id@version'; an unknown reference is NotFoundError listing the known."""
    timeline = load_timeline()
    assert timeline.get("linkedin-2025-11").ref == "linkedin-2025-11@2"
    assert timeline.get("linkedin-2024-09@1").ref == "linkedin-2024-09@1"
    with pytest.raises(NotFoundError, match="known: linkedin-2024-09@1, linkedin-2025-11@2"):
        timeline.get("linkedin-2024-09@2")


# -- diffs --------------------------------------------------------------------------------------


def test_diff_between_the_builtins_names_the_new_regions_and_purposes() -> None:
    """2024-09 → 2025-11: genai.training gains EEA/CH/UK/CA/HK; three affiliate purposes are added."""
    changes = diff_policies(_builtin("linkedin-2024-09"), _builtin("linkedin-2025-11"))
    added = {c.path for c in changes if c.before is None and c.after is not None}
    for region in ("EEA", "CH", "UK", "CA", "HK"):
        assert f"purposes.genai.training.regions.{region}" in added
    assert "purposes.genai.training.regions.CN" not in {c.path for c in changes}
    assert "purposes.genai.training.regions.ROW" not in {c.path for c in changes}
    for purpose in ("genai.affiliate_training", "ads.affiliate_sharing", "ads.affiliate_data"):
        assert f"purposes.{purpose}" in added
    eea = next(c for c in changes if c.path == "purposes.genai.training.regions.EEA")
    assert eea.after["legal_basis"] == "legitimate_interest"
    assert eea.after["controlled_by"] == ["genai_improvement"]
    assert eea.describe().startswith("purposes.genai.training.regions.EEA: added legal basis")


def test_diff_ignores_metadata_and_is_empty_for_the_same_rules() -> None:
    """Two policies that differ only in id, title and dates have no rule changes."""
    policy = _builtin("linkedin-2025-11")
    renamed = policy.model_copy(update={"id": "renamed", "title": "Other", "version": 9})
    assert diff_policies(policy, renamed) == []
    assert diff_policies(policy, policy) == []
