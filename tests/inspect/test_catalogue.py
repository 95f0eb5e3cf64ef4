"""The archive catalogue: every file of DOMAIN.md §7 is recognised as its kind with the right categories,
the traps land where the domain says, and what the catalogue does not know is reported, never guessed."""

from __future__ import annotations

import csv
import io
import tomllib
import zipfile
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentgate.exceptions import TaxonomyError
from consentgate.inspect.catalogue import (
    Catalogue,
    builtin_catalogue,
    load_catalogue,
    normalise_column,
    normalise_name,
)
from consentgate.taxonomy import load_taxonomy
from consentgate.taxonomy.models import Sensitivity
from tests.inspect import archives
from tests.inspect.archives import columns

NEVER_TRAIN = {k for k, c in load_taxonomy().categories.items() if c.sensitivity is Sensitivity.never_train}
MESSAGES = (
    "CONVERSATION ID,CONVERSATION TITLE,FROM,SENDER PROFILE URL,TO,RECIPIENT PROFILE URLS,DATE,SUBJECT,"
    "CONTENT,FOLDER"
)
RECEIPTS = (
    "First Name,Last Name,Billing Country,Postal Code,Transaction Made At,Payment Method Type,Invoice Number,"
    "Description,Tax Amount,Sub Total,Total Amount,Currency Code"
)
# Where DOMAIN §7 elides a header ("…") or names a file without one, the header is that of real archives.
AD_TARGETING = ",".join(archives.AD_TARGETING_HEADER)
JOB_SEEKER = ",".join(archives.JOB_SEEKER_HEADER)
LEARNING = ",".join(archives.LEARNING_HEADER) + ","  # the header ends with a comma
AD_TARGETING_CATEGORIES = [
    "activity.company_follows",
    "groups.membership",
    "inferred.age_range",
    "inferred.gender",
    "inferred.interests",
    "profile.connections",
    "profile.education",
    "profile.employer",
    "profile.location",
    "profile.positions",
    "profile.skills",
]

# Every file of DOMAIN §7, both tables: (path as DOMAIN names it, header, kind, categories).
# fmt: off
DOMAIN_FILES: list[tuple[str, str | None, str, list[str]]] = [
    # First table: the core headers.
    ("Profile.csv", "First Name,Last Name,Maiden Name,Address,Birth Date,Headline,Summary,Industry,Zip Code,"
     "Geo Location,Twitter Handles,Websites,Instant Messengers", "profile",
     ["profile.birth_date", "profile.contact", "profile.headline", "profile.location", "profile.name"]),
    ("Positions.csv", "Company Name,Title,Description,Location,Started On,Finished On", "positions",
     ["profile.employer", "profile.positions"]),
    ("Education.csv", "School Name,Start Date,End Date,Notes,Degree Name,Activities", "education",
     ["profile.education"]),
    ("Skills.csv", "Name", "skills", ["profile.skills"]),
    ("Certifications.csv", "Name,Url,Authority,Started On,Finished On,License Number", "certifications",
     ["profile.certifications"]),
    ("Shares.csv", "Date,ShareLink,ShareCommentary,SharedUrl,MediaUrl,Visibility",
     "shares", ["content.posts"]),
    ("Comments.csv", "Date,Link,Message", "comments", ["content.comments"]),
    ("messages.csv", MESSAGES, "messages", ["messages.private"]),
    ("Jobs/Job Applications.csv", "Application Date,Contact Email,Contact Phone Number,Company Name,"
     "Job Title,Job Url,Resume Name,Question And Answers", "job_applications", ["jobs.applications"]),
    ("Inferences_about_you.csv", "Category,Type of inference,Description,Inference", "inferences",
     ["inferred.interests"]),
    ("Email Addresses.csv", "Email Address,Confirmed,Primary,Updated On",
     "email_addresses", ["profile.contact"]),
    ("Receipts_v2.csv", RECEIPTS, "receipts", ["payment.methods", "payment.transactions"]),
    # Second table: more files seen in real exports.
    ("Profile Summary.csv", "Profile Summary", "profile_summary", ["profile.headline"]),
    ("Languages.csv", "Name,Proficiency", "languages", ["profile.skills"]),
    ("Volunteering.csv", "Company Name,Role,Cause,Started On,Finished On,Description", "volunteering",
     ["profile.volunteering"]),
    ("Projects.csv", "Title,Description,Url,Started On,Finished On", "projects", ["profile.publications"]),
    ("Publications.csv", "Name,Published On,Description,Publisher,Url",
     "publications", ["profile.publications"]),
    ("Connections.csv", "First Name,Last Name,URL,Email Address,Company,Position,Connected On", "connections",
     ["profile.connections"]),
    ("Invitations.csv", "From,To,Sent At,Message,Direction,inviterProfileUrl,inviteeProfileUrl",
     "invitations", ["messages.private", "profile.connections"]),
    ("Endorsement_Received_Info.csv", "Endorsement Date,Skill Name,Endorser First Name,Endorser Last Name,"
     "Endorser Public Url,Endorsement Status", "endorsements_received", ["profile.endorsements"]),
    ("Recommendations_Received.csv", "First Name,Last Name,Company,Job Title,Text,Creation Date,Status",
     "recommendations_received", ["profile.endorsements"]),
    ("Recommendations_Given.csv", "First Name,Last Name,Company,Job Title,Text,Creation Date,Status",
     "recommendations_given", ["profile.endorsements"]),
    ("Reactions.csv", "Date,Type,Link", "reactions", ["activity.feed"]),
    ("Votes.csv", "Date,Link,OptionText", "votes", ["content.polls"]),
    ("InstantReposts.csv", "Date,Link", "instant_reposts", ["activity.feed"]),
    ("Saved_Items.csv", "savedItem,CreatedTime", "saved_items", ["activity.feed"]),
    ("Company Follows.csv", "Organization,Followed On", "company_follows", ["activity.company_follows"]),
    ("Member_Follows.csv", "Date,Status,FullName", "member_follows", ["activity.feed"]),
    ("Events.csv", "Event Name,Event Time,Status,External Url", "events", []),
    ("Rich_Media.csv", "Date/Time,Media Description,Media Link",
     "rich_media", ["content.videos", "profile.photo"]),
    ("guide_messages.csv", MESSAGES, "ai_guide_messages", ["ai.interactions"]),
    ("learning_coach_messages.csv", MESSAGES, "ai_learning_coach_messages", ["ai.interactions"]),
    ("learning_role_play_messages.csv", MESSAGES, "ai_role_play_messages", ["ai.interactions"]),
    ("Private_identity_asset.csv", "Private Identity Asset Name,Private Identity Asset Raw Text",
     "saved_resume", ["jobs.resumes"]),
    ("Jobs/Job Applicant Saved Answers.csv", "Question,Answer",
     "job_saved_answers", ["jobs.screening_answers"]),
    ("Jobs/Job Applicant Saved Screening Question Responses.csv", "Question,Answer",
     "job_screening_responses", ["jobs.screening_answers"]),
    ("Jobs/Saved Jobs.csv", "Saved Date,Job Url,Job Title,Company Name", "saved_jobs", []),
    ("Jobs/Job Seeker Preferences.csv", JOB_SEEKER, "job_seeker_preferences", ["profile.contact"]),
    ("Ad_Targeting.csv", AD_TARGETING, "ad_targeting", AD_TARGETING_CATEGORIES),
    ("Ads Clicked.csv", "Ad clicked Date,Ad Title/Id", "ads_clicked", ["activity.ad_engagement"]),
    ("LAN Ads Engagement.csv", "Action,Date,Ad Title/Id,Page/App",
     "lan_ads_engagement", ["activity.ad_engagement"]),
    ("SearchQueries.csv", "Time,Search Query", "search_queries", ["activity.search_history"]),
    ("Learning.csv", LEARNING, "learning", []),
    ("PhoneNumbers.csv", "Extension,Number,Type", "phone_numbers", ["profile.contact"]),
    ("Whatsapp Phone Numbers.csv", "Number,Extension,Is_WhatsApp_Number", "whatsapp_phone_numbers",
     ["profile.contact"]),
    ("Registration.csv", "Registered At,Registration Ip,Subscription Types",
     "registration", ["account.credentials"]),
    ("Logins.csv", "Login Date,IP Address,User Agent,Login Type", "logins", ["account.credentials"]),
    ("Security Challenges.csv", "Challenge Date,IP Address,User Agent,Country,Challenge Type",
     "security_challenges", ["account.credentials"]),
    ("Receipts.csv", RECEIPTS, "receipts", ["payment.methods", "payment.transactions"]),
    ("Articles/Articles/My first article.html", None, "articles", ["content.articles"]),
    # Named among the member-id variants only.
    ("Hashtag_Follows.csv", "HashTag,CreatedTime,LastModifiedTime,State",
     "hashtag_follows", ["activity.feed"]),
]
# fmt: on

# Columns left unmapped on purpose: no category of the taxonomy fits (catalogue.yaml says why).
DELIBERATELY_UNMAPPED = {
    "Events.csv": columns("Event Name,Event Time,Status,External Url"),
    "Learning.csv": archives.LEARNING_HEADER,
    "Jobs/Saved Jobs.csv": columns("Saved Date,Job Url,Job Title,Company Name"),
    "Jobs/Job Seeker Preferences.csv": [c for c in archives.JOB_SEEKER_HEADER if c != "Phone Number"],
    "Registration.csv": ["Subscription Types"],
    "Ad_Targeting.csv": ["Interface Locales", "interfaceLocale"],
}

# Name drift of DOMAIN §7: (name found in real archives, the file it is).
DRIFT = [
    ("Company_Follows.csv", "Company Follows.csv"),
    ("Rich Media.csv", "Rich_Media.csv"),
    ("Receipts.csv", "Receipts_v2.csv"),
    ("Shares_8812345.csv", "Shares.csv"),
    ("Comments_8812345.csv", "Comments.csv"),
    ("Reactions_8812345.csv", "Reactions.csv"),
    ("Votes_8812345.csv", "Votes.csv"),
    ("Saved_Items_8812345.csv", "Saved_Items.csv"),
    ("Hashtag_Follows_8812345.csv", "Hashtag_Follows.csv"),
    ("Jobs/Job Applications_1.csv", "Jobs/Job Applications.csv"),
    ("Jobs/Job Applications_2.csv", "Jobs/Job Applications.csv"),
    ("Basic_LinkedInDataExport_01-02-2026/Profile.csv", "Profile.csv"),
    ("Complete_LinkedInDataExport_01-02-2026/Jobs/Saved Jobs.csv", "Jobs/Saved Jobs.csv"),
    ("Messages.csv", "messages.csv"),
]
HEADERS = {path: columns(header) for path, header, _, _ in DOMAIN_FILES if header is not None}


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return builtin_catalogue()


# ------------------------------------------------------------------------------- the files of §7


@pytest.mark.parametrize(
    ("path", "header", "kind", "categories"), DOMAIN_FILES, ids=[f[0] for f in DOMAIN_FILES]
)
def test_every_domain_file_is_recognised_with_its_categories(catalogue, path, header, kind, categories):
    found = catalogue.recognise(path, None if header is None else columns(header))
    assert found.kind == kind
    assert found.categories == categories
    assert found.unrecognised_columns == DELIBERATELY_UNMAPPED.get(path, [])
    assert set(found.label) == {"en", "de"}


def test_the_catalogue_holds_no_kind_the_domain_does_not_list(catalogue):
    assert set(catalogue.kinds) == {kind for _, _, kind, _ in DOMAIN_FILES}


@pytest.mark.parametrize(("variant", "base"), DRIFT, ids=[d[0] for d in DRIFT])
def test_name_drift_is_recognised_as_the_same_file(catalogue, variant, base):
    header = HEADERS[base]
    assert catalogue.recognise(variant, header) == catalogue.recognise(base, header)
    assert catalogue.recognise(variant, header).kind is not None


# --------------------------------------------------------------------------------------- traps


@pytest.mark.parametrize(
    "name", ["guide_messages.csv", "learning_coach_messages.csv", "learning_role_play_messages.csv"]
)
def test_ai_chats_share_the_messages_header_but_are_generative_ai_input(catalogue, name):
    header = columns(MESSAGES)
    assert catalogue.recognise(name, header).categories == ["ai.interactions"]
    assert "ai.interactions" not in NEVER_TRAIN
    assert catalogue.recognise("messages.csv", header).categories == ["messages.private"]
    assert "messages.private" in NEVER_TRAIN


def test_private_identity_asset_is_a_saved_resume(catalogue):
    found = catalogue.recognise("Private_identity_asset.csv", HEADERS["Private_identity_asset.csv"])
    assert (found.kind, found.categories) == ("saved_resume", ["jobs.resumes"])
    assert "jobs.resumes" not in NEVER_TRAIN


def test_job_applications_are_never_used_but_saved_screening_answers_are(catalogue):
    applications = catalogue.recognise("Jobs/Job Applications.csv", HEADERS["Jobs/Job Applications.csv"])
    assert set(applications.columns.values()) == {"jobs.applications"} <= NEVER_TRAIN
    for name in (
        "Jobs/Job Applicant Saved Answers.csv",
        "Jobs/Job Applicant Saved Screening Question Responses.csv",
    ):
        assert catalogue.recognise(name, ["Question", "Answer"]).categories == ["jobs.screening_answers"]
    assert "jobs.screening_answers" not in NEVER_TRAIN


def test_a_receipt_is_payment_data_with_its_payment_method_apart(catalogue):
    found = catalogue.recognise("Receipts_v2.csv", columns(RECEIPTS))
    assert found.columns.pop("Payment Method Type") == "payment.methods"
    assert set(found.columns.values()) == {"payment.transactions"}  # the buyer's name included
    assert {"payment.methods", "payment.transactions"} <= NEVER_TRAIN


def test_profile_birth_date_location_and_contact_columns(catalogue):
    found = catalogue.recognise("Profile.csv", HEADERS["Profile.csv"])
    assert found.columns["Birth Date"] == "profile.birth_date"
    assert found.columns["Zip Code"] == found.columns["Geo Location"] == "profile.location"
    assert found.columns["Address"] == found.columns["Websites"] == "profile.contact"
    assert found.columns["First Name"] == found.columns["Maiden Name"] == "profile.name"


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("Email Addresses.csv", "profile.contact"),
        ("PhoneNumbers.csv", "profile.contact"),
        ("Whatsapp Phone Numbers.csv", "profile.contact"),
        ("Logins.csv", "account.credentials"),
        ("Security Challenges.csv", "account.credentials"),
        ("Registration.csv", "account.credentials"),
    ],
)
def test_contact_and_account_files(catalogue, name, category):
    assert catalogue.recognise(name, HEADERS[name]).categories == [category]


def test_an_invitation_note_is_a_private_message(catalogue):
    found = catalogue.recognise("Invitations.csv", HEADERS["Invitations.csv"])
    assert found.columns["Message"] == "messages.private"
    assert found.columns["From"] == "profile.connections"


# ----------------------------------------------------------------------- reported, never guessed


@pytest.mark.parametrize(
    "name", ["messages_backup.csv", "Messages (copy).csv", "chats.csv", "Whatever_New.csv"]
)
def test_a_name_no_pattern_claims_is_unrecognised_even_with_a_known_header(catalogue, name):
    found = catalogue.recognise(name, columns(MESSAGES))
    assert found.kind is None
    assert (found.label, found.columns, found.categories, found.unrecognised_columns) == ({}, {}, [], [])


def test_a_known_name_with_a_foreign_header_is_unrecognised(catalogue):
    assert catalogue.recognise("Profile.csv", ["Foo", "Bar"]).kind is None
    assert catalogue.recognise("guide_messages.csv", ["Question", "Answer"]).kind is None


def test_columns_the_catalogue_does_not_map_are_reported(catalogue):
    found = catalogue.recognise("Profile.csv", [*HEADERS["Profile.csv"], "Pronouns", "Open To Work"])
    assert found.unrecognised_columns == ["Pronouns", "Open To Work"]
    assert found.columns["Headline"] == "profile.headline"


def test_duplicate_column_names_map_once(catalogue):
    found = catalogue.recognise("Ad_Targeting.csv", archives.AD_TARGETING_HEADER)
    assert archives.AD_TARGETING_HEADER.count("Company Names") == 3
    assert list(found.columns).count("Company Names") == 1
    assert found.columns["Job Titles"] == "profile.positions"
    assert found.unrecognised_columns == ["Interface Locales", "interfaceLocale"]


def test_the_empty_column_a_trailing_comma_leaves_is_not_a_column(catalogue):
    found = catalogue.recognise("Learning.csv", [*archives.LEARNING_HEADER, ""])
    assert "" not in found.unrecognised_columns
    assert found.kind == "learning"


def test_header_columns_are_compared_normalised_and_reported_as_written(catalogue):
    header = ['\ufeff"CONVERSATION ID"', " conversation_title ", "From", *columns(MESSAGES)[3:]]
    found = catalogue.recognise("messages.csv", header)
    assert found.kind == "messages"
    assert found.columns['\ufeff"CONVERSATION ID"'] == "messages.private"
    assert found.unrecognised_columns == []


@pytest.mark.parametrize(
    ("name", "kind", "categories"),
    [
        ("learning_role_play_messages.csv", "ai_role_play_messages", ["ai.interactions"]),
        ("messages.csv", "messages", ["messages.private"]),
        ("Receipts_v2.csv", "receipts", ["payment.methods", "payment.transactions"]),
    ],
)
def test_a_file_without_a_header_is_recognised_by_name_with_its_kinds_categories(
    catalogue, name, kind, categories
):
    """A single line such as "No conversations found": the caller passes header=None."""
    found = catalogue.recognise(name, None)
    assert (found.kind, found.categories, found.columns, found.unrecognised_columns) == (
        kind,
        categories,
        {},
        [],
    )


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("Articles/Articles/My first article.html", "articles"),
        ("Basic_LinkedInDataExport_01-02-2026/Articles/Articles/Why consent matters.html", "articles"),
        ("Articles/Articles/2025-06-01 Notes_12.html", "articles"),
        ("index.html", None),
        ("Jobs/Saved Jobs.html", None),
        ("Articles/Articles/notes.csv", None),
    ],
)
def test_html_articles_are_member_content(catalogue, path, kind):
    found = catalogue.recognise(path, None)
    assert found.kind == kind
    assert found.categories == (["content.articles"] if kind else [])


# ------------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Company Follows.csv", "Company_Follows.csv"),
        ("Rich Media.csv", "Rich_Media.csv"),
        ("Whatsapp Phone Numbers.csv", "whatsapp-phone-numbers.CSV"),
        ("Shares_8812345.csv", "Shares.csv"),
        ("Shares_8812345_2.csv", "Shares.csv"),
        ("Job Applications_1.csv", "Job Applications.csv"),
        ("Jobs/Job Applications_2.csv", "Jobs/Job Applications.csv"),
        ("Basic_LinkedInDataExport_01-02-2026/Profile.csv", "Profile.csv"),
        ("Complete_LinkedInDataExport_01-02-2026/Jobs/Saved Jobs.csv", "jobs/saved_jobs.csv"),
        ("export\\Articles\\Articles\\A.html", "Articles/Articles/a.html"),
        ("./Profile.csv", "PROFILE.csv"),
    ],
)
def test_names_that_normalise_alike(a, b):
    assert normalise_name(a) == normalise_name(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Receipts_v2.csv", "Receipts.csv"),  # two names of one kind, not one name
        ("Export_2024.csv", "Export.csv"),  # four digits: more often a year than an id or a part
        ("Jobs/Saved Jobs.csv", "Saved Jobs.csv"),  # the export's own sub-folder counts
        ("Articles/Articles/a.html", "Articles/a.html"),
    ],
)
def test_names_that_stay_apart(a, b):
    assert normalise_name(a) != normalise_name(b)


def test_normalised_names_keep_the_exports_sub_folders():
    assert normalise_name("Basic_LinkedInDataExport_01-02-2026/Jobs/Job Applications_2.csv") == (
        "jobs/jobapplications.csv"
    )
    assert normalise_name("X/Articles/Articles/My Post.html") == "articles/articles/mypost.html"
    assert normalise_name("Jobs/Other/Profile.csv") == "profile.csv"  # only the run just above the file


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ('\ufeff"CONVERSATION ID"', "conversationid"),
        (' "First Name" ', "firstname"),
        ("'Zip Code'", "zipcode"),
        ("Is_WhatsApp_Number", "iswhatsappnumber"),
        ("Date/Time", "date/time"),
        ("", ""),
    ],
)
def test_normalise_column(raw, normalised):
    assert normalise_column(raw) == normalised


TOP_FOLDERS = ["", "Basic_LinkedInDataExport_01-02-2026/", "Complete_LinkedInDataExport_12-31-2025/", "x/y/"]
CSV_FILES = [(path, header) for path, header, _, _ in DOMAIN_FILES if header is not None]


@given(
    st.sampled_from(CSV_FILES),
    st.sampled_from(TOP_FOLDERS),
    st.sampled_from(["", "_8812345", "_1", "_12", " 123"]),
    st.lists(st.booleans(), min_size=80, max_size=80),
    st.lists(st.sampled_from([" ", "_", "-"]), min_size=80, max_size=80),
)
def test_recognition_survives_case_separators_suffixes_and_top_folders(file, top, suffix, upper, separators):
    path, header = file
    stem, extension = path.rsplit(".", 1)
    renamed = "".join(
        separators[i] if ch in " _" else (ch.upper() if upper[i] else ch.lower()) for i, ch in enumerate(stem)
    )
    catalogue = builtin_catalogue()
    assert catalogue.recognise(f"{top}{renamed}{suffix}.{extension}", columns(header)) == catalogue.recognise(
        path, columns(header)
    )


# ------------------------------------------------------------------------------- a bad catalogue

GOOD_KIND = """
  - kind: receipts
    label: {en: "Receipts", de: "Belege"}
    files: ["Receipts.csv"]
    columns:
      Total Amount: payment.transactions
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD_KIND.replace("payment.transactions", "payment.cards"),
            "kind 'receipts', column 'Total Amount': unknown category 'payment.cards'",
        ),
        (
            GOOD_KIND + "    file_category: content.blogs\n",
            "kind 'receipts', file_category: unknown category 'content.blogs'",
        ),
        (
            GOOD_KIND.replace('    label: {en: "Receipts", de: "Belege"}\n', ""),
            "kind 'receipts', label: Field required",
        ),
        (GOOD_KIND + "    colour: blue\n", "kind 'receipts', colour: Extra inputs are not permitted"),
        (GOOD_KIND + "      Total Amount: payment.methods\n", "duplicate key 'Total Amount'"),
        (
            GOOD_KIND + "      total_amount: payment.methods\n",
            "'Total Amount' and 'total_amount' are the same",
        ),
        (
            GOOD_KIND + GOOD_KIND.replace("kind: receipts", "kind: invoices"),
            "already claimed by kind 'receipts'",
        ),
        (GOOD_KIND + GOOD_KIND, "kind 'receipts': duplicate kind"),
        ("\n  - kind: [", "line 2, column 12: not valid YAML"),
        (
            GOOD_KIND.replace('["Receipts.csv"]', '["Receipts.csv", " / "]'),
            "kind 'receipts', files.1: String should",
        ),
        (
            GOOD_KIND.replace("columns:\n      Total Amount: payment.transactions", "columns: {}"),
            "maps no column",
        ),
        (
            GOOD_KIND.replace("kind: receipts", "kind: Receipts!"),
            "kind 'Receipts!', kind: String should match",
        ),
    ],
    ids=[
        "unknown-category",
        "unknown-file-category",
        "missing-label",
        "extra-field",
        "duplicate-yaml-key",
        "columns-equal-after-normalisation",
        "one-file-two-kinds",
        "duplicate-kind",
        "not-yaml",
        "empty-file-pattern",
        "maps-nothing-without-note",
        "bad-kind-id",
    ],
)
def test_a_bad_catalogue_fails_to_load_with_a_clear_message(tmp_path, text, expected):
    path = tmp_path / "catalogue.yaml"
    path.write_text("kinds:" + text, "utf-8")
    with pytest.raises(TaxonomyError, match="invalid archive catalogue") as caught:
        load_catalogue(load_taxonomy(), path=path)
    assert str(caught.value).startswith(str(path))
    assert expected in str(caught.value)


def test_a_good_catalogue_from_a_path_loads(tmp_path):
    path = tmp_path / "catalogue.yaml"
    path.write_text("kinds:" + GOOD_KIND, "utf-8")
    found = load_catalogue(load_taxonomy(), path=path).recognise(
        "Receipts_8812345.csv", ["Total Amount", "Tip"]
    )
    assert (found.kind, found.categories, found.unrecognised_columns) == (
        "receipts",
        ["payment.transactions"],
        ["Tip"],
    )


def test_the_catalogue_ships_as_package_data():
    assert resources.files("consentgate.inspect").joinpath("catalogue.yaml").is_file()
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text("utf-8"))
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert "src/consentgate" in wheel["packages"]  # every file of the package, data files included
    assert not wheel.get("exclude")


# ------------------------------------------------------------------------------- fixture archives


def _header_and_records(path: str, data: bytes, known: set[str]) -> tuple[list[str] | None, int]:
    """A plain reader for the fixtures (the inspector has its own): skips a preamble up to the first row
    that looks like a header (two fields or more, or one known column), counts non-blank rows after it."""
    if path.lower().endswith(".html"):
        return None, 1
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    for index, row in enumerate(rows):
        if len(row) >= 2 or (len(row) == 1 and normalise_column(row[0]) in known):
            return row, sum(1 for r in rows[index + 1 :] if any(r))
    return None, 0


def _members(fixture: str, tmp_path: Path) -> dict[str, bytes]:
    if fixture == "folder":
        root = archives.folder_export(tmp_path)
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    builder = {"complete": archives.complete_export, "basic": archives.basic_export}.get(fixture)
    zips = [builder(tmp_path)] if builder else archives.two_part_export(tmp_path)
    members: dict[str, bytes] = {}
    for target in zips:
        with zipfile.ZipFile(target) as archive:
            members |= {n: archive.read(n) for n in archive.namelist() if not n.endswith("/")}
    return members


@pytest.mark.parametrize("fixture", sorted(archives.EXPECTED))
def test_fixture_archives_are_recognised_as_expected(catalogue, tmp_path, fixture):
    known = {normalise_column(c) for e in catalogue.kinds.values() for c in (*e.columns, *e.header)}
    members = _members(fixture, tmp_path)
    assert set(members) == set(archives.EXPECTED[fixture])
    kinds, records, unrecognised = {}, {}, {}
    for path, data in members.items():
        header, records[path] = _header_and_records(path, data, known)
        found = catalogue.recognise(path, header)
        kinds[path] = found.kind
        if found.unrecognised_columns:
            unrecognised[path] = found.unrecognised_columns
    assert kinds == archives.EXPECTED[fixture]
    assert records == archives.RECORDS[fixture]
    assert unrecognised == archives.UNRECOGNISED_COLUMNS[fixture]


def test_the_fixtures_carry_the_quirks_of_real_archives(tmp_path):
    complete, basic = archives.FILES["complete"], archives.FILES["basic"]
    top = archives.TOP + "/"
    assert complete["Connections.csv"].data.startswith(b"Notes:\n")
    assert b"URL" not in complete["Connections.csv"].data.split(b"\n\n", 1)[1].split(b"\n")[0]
    assert b'"' not in complete["Profile.csv"].data.split(b"\n")[0]  # unquoted header
    assert b"Mar 3, 1985" in complete["Profile.csv"].data
    assert complete["messages.csv"].records < complete["messages.csv"].data.count(b"\n") - 1  # multi-line
    assert {"Jobs/Job Applications_1.csv", "Jobs/Job Applications_2.csv", "Rich Media.csv"} <= set(complete)
    assert b"You uploaded a profile photo on" in complete["Rich Media.csv"].data
    csv_files = {p: f for p, f in basic.items() if p.endswith(".csv")}
    assert all(f.data.endswith(b"\r\n") for f in csv_files.values())  # CRLF
    assert all(
        f.data.lstrip(b"\xef\xbb\xbf").startswith((b'"', b"Notes:", b"No conversations"))
        for f in csv_files.values()
    )
    assert sum(f.data.startswith(b"\xef\xbb\xbf") for f in csv_files.values()) >= 3  # a BOM on some files
    assert basic[top + "learning_role_play_messages.csv"].data == b"No conversations found\r\n"
    assert basic[top + "Learning.csv"].data.split(b"\r\n")[0].endswith(b'",')
    assert b'"","","","","","","08 Feb 2026"' in basic[top + "Connections.csv"].data  # a hidden profile
    assert b"; " in basic[top + "Ad_Targeting.csv"].data
    assert {top + n for n in ("Shares_8812345.csv", "Receipts_v2.csv", "guide_messages.csv")} <= set(basic)
    with zipfile.ZipFile(archives.basic_export(tmp_path)) as archive:
        assert top in archive.namelist()  # a top folder, with its directory entry
    first, second = archives.two_part_export(tmp_path)
    assert first.name != second.name
