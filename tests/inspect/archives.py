"""Members' data archives with the quirks of real ones (DOMAIN.md §7), and what must be made of them.

Four fixtures, each a function writing into a folder and returning what a member would point the
inspector at:

- ``complete_export``: an older Complete export. Files at the root of the ZIP, unquoted headers, LF line
  ends, Connections.csv with the Notes preamble and no URL column, messages.csv with multi-line quoted
  fields, Profile.csv with a birth date, Receipts.csv (the older name), Job Applications split in _1/_2,
  "Rich Media.csv" with the free-text date, an HTML article, and three files the catalogue does not know
  (among them a renamed copy of messages.csv, which must not be guessed from its header).
- ``basic_export``: a newer Basic export. A top folder inside the ZIP (with directory entries), every
  header and field quoted, a BOM on some files, CRLF, member-id suffixes (Shares_8812345.csv …),
  Receipts_v2.csv, the AI-chat files with messages' header, Private_identity_asset.csv, Learning.csv whose
  header ends with a comma, a single-line "No conversations found" file, Ad_Targeting.csv with duplicate
  column names and ";"-separated values, rows in Connections holding only a date.
- ``two_part_export``: one export split over two ZIPs (Job Applications_1 in one, _2 in the other).
- ``folder_export``: the basic export unpacked; the folder returned is the export's top folder.

Per fixture: ``EXPECTED`` (path inside the archive → kind, None for a file the catalogue must report as
unrecognised), ``RECORDS`` (data rows written: a reader must count the same; preamble, header and blank
lines are not rows, a multi-line field is one row, a Connections row holding only a date is a connection
who hid their profile and counts; a single-line file without a header has none; an HTML article is one)
and ``UNRECOGNISED_COLUMNS`` (columns of recognised files the catalogue does not map). Directory entries
of a ZIP are not files. Paths use "/".
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BOM = "\ufeff"
TOP = "Basic_LinkedInDataExport_01-02-2026"
COMPLETE_ZIP = "Complete_LinkedInDataExport_03-15-2024.zip"
BASIC_ZIP = f"{TOP}.zip"
TWO_PART_ZIPS = (
    "Complete_LinkedInDataExport_02-10-2026_1.zip",
    "Complete_LinkedInDataExport_02-10-2026_2.zip",
)


def columns(header_line: str) -> list[str]:
    """A header as DOMAIN §7 writes it ("First Name,Last Name,…") as a list of column names."""
    return header_line.split(",")


# Dates, one format per file, as DOMAIN §7 lists them.
UTC_SECONDS = "2025-06-01 14:03:22 UTC"
DAY_MONTH_YEAR = "08 Feb 2026"
US_SHORT = "1/29/26, 2:37 PM"
SLASHED_UTC = "2022/01/16 02:51:39 UTC"
BIRTH_DATE = "Mar 3, 1985"
MONTH_YEAR = "Jan 2020"
PLAIN_SECONDS = "2025-09-01 08:00:00"

MESSAGES_HEADER = columns(
    "CONVERSATION ID,CONVERSATION TITLE,FROM,SENDER PROFILE URL,TO,RECIPIENT PROFILE URLS,DATE,SUBJECT,"
    "CONTENT,FOLDER"
)
RECEIPTS_HEADER = columns(
    "First Name,Last Name,Billing Country,Postal Code,Transaction Made At,Payment Method Type,"
    "Invoice Number,Description,Tax Amount,Sub Total,Total Amount,Currency Code"
)
PROFILE_HEADER = columns(
    "First Name,Last Name,Maiden Name,Address,Birth Date,Headline,Summary,Industry,Zip Code,Geo Location,"
    "Twitter Handles,Websites,Instant Messengers"
)
JOB_APPLICATIONS_HEADER = columns(
    "Application Date,Contact Email,Contact Phone Number,Company Name,Job Title,Job Url,Resume Name,"
    "Question And Answers"
)
# The columns of real archives; DOMAIN §7 names only the duplicated Company Names and Job Titles.
AD_TARGETING_HEADER = columns(
    "Member Age,Company Names,Company Names,Company Follower of,Company Names,Company Category,"
    "Company Size,Degrees,degreeClass,Member Schools,Company Growth Rate,Fields of Study,Company Connections,"
    "Function By Size,Job Functions,Member Gender,Graduation Year,Member Groups,Company Industries,"
    "Member Interests,Interface Locales,interfaceLocale,Member Traits,Profile Locations,Company Revenue,"
    "Job Seniorities,Member Skills,Job Titles,Job Titles,Job Titles,Years of Experience"
)
# One wide row, values separated by ";" (the duplicated columns mostly empty).
AD_TARGETING_ROW = (
    "25 to 34|Example GmbH; Old Corp||Acme; Example GmbH||Software|201-500|Master's Degree||TU Berlin||"
    "Computer Science; Mathematics|Acme; Initech||Engineering|Female|2014|Data Engineers; Privacy Pros|"
    "Software Development|Data Protection; Cloud Computing|German|de_DE|Job Seekers; Mobile Users|"
    "Berlin; Germany; European Union||Senior|Python; SQL; English|Data Engineer|Analyst||6 to 10"
)
JOB_SEEKER_HEADER = columns(
    "Locations,Industries,Company Employee Count,Preferred Job Types,Job Titles,Open To Recruiters,"
    "Dream Companies,Profile Shared With Job Poster,Job Title For Searching Fast Growing Companies,"
    "Introduction Statement,Phone Number,Job Seeker Activity Level,Preferred Start Time Range,"
    "Commute Preference Starting Address,Commute Preference Starting Time,Mode Of Transportation,"
    "Maximum Commute Duration,Open Candidate Visibility,Job Seeking Urgency Level"
)
LEARNING_HEADER = columns(
    "Content Title,Content Description,Content Type,Content Last Watched Date (if viewed),"
    "Content Completed At (if completed),Content Saved,Notes taken on videos (if taken)"
)
CONNECTIONS_NOTES = (
    "Notes:\n"
    '"When exporting your connection data, you may notice that some of the email addresses are missing. '
    "You will only see email addresses for connections who have allowed their connections to see or "
    "download their email address using this setting https://www.linkedin.com/psettings/privacy/email. "
    'You can learn more here https://www.linkedin.com/help/linkedin/answer/261"\n'
    "\n"
)
NAMES = ["Ben", "Chiara", "Dmitri", "Elif", "Farah", "Goran", "Hana", "Ivo", "Jana", "Kofi", "Lena", "Mads"]


@dataclass(frozen=True)
class ArchiveFile:
    """One file of a fixture archive and what must be made of it."""

    data: bytes
    kind: str | None
    records: int
    unrecognised: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Style:
    quote_all: bool
    line_end: str


OLD = _Style(quote_all=False, line_end="\n")
NEW = _Style(quote_all=True, line_end="\r\n")

Row = str | Sequence[str]
"""A data row: its values separated by "|" (compact to read), or a list when a value holds a "|"."""


def _csv(header: Sequence[str], rows: Sequence[Row], style: _Style) -> str:
    out = io.StringIO()
    if style.quote_all:
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator=style.line_end)
    else:
        writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator=style.line_end)
    writer.writerow(header)
    writer.writerows(row.split("|") if isinstance(row, str) else row for row in rows)
    return out.getvalue()


def _encode(bom: bool, text: str) -> bytes:
    return ((BOM if bom else "") + text).encode("utf-8")


def _table(
    kind: str | None,
    header: str | Sequence[str],
    rows: Sequence[Row],
    style: _Style,
    *,
    bom: bool = False,
    preamble: str = "",
    unrecognised: Sequence[str] = (),
) -> ArchiveFile:
    """A CSV file; ``header`` as DOMAIN §7 writes it ("First Name,Last Name") or as a list."""
    names = columns(header) if isinstance(header, str) else header
    text = preamble.replace("\n", style.line_end) + _csv(names, rows, style)
    return ArchiveFile(_encode(bom, text), kind, len(rows), tuple(unrecognised))


def _trailing_comma(kind: str, header: Sequence[str], rows: Sequence[Row], style: _Style) -> ArchiveFile:
    """A CSV whose every line ends with a comma (Learning.csv): an empty last column. Its kind maps no
    column, so every named column is unrecognised."""
    lines = _csv(header, rows, style).split(style.line_end)
    text = style.line_end.join(line + "," if line else line for line in lines)
    return ArchiveFile(_encode(False, text), kind, len(rows), tuple(header))


def _html(title: str) -> ArchiveFile:
    page = (
        f"<html><head><title>{title}</title></head><body><h1>{title}</h1>"
        "<p>Created on 2025-06-01 14:03 · Published on 2025-06-02 09:00</p>"
        f"<p>Some thoughts on {title.lower()}.</p></body></html>\n"
    )
    return ArchiveFile(page.encode("utf-8"), "articles", 1)


def _messages(
    kind: str | None, count: int, style: _Style, *, bom: bool = False, ai: bool = False
) -> ArchiveFile:
    """Conversations with multi-line quoted contents (and quotes inside them)."""
    rows = []
    for i in range(count):
        name = NAMES[i % len(NAMES)]
        if ai:
            me_first = i % 2 == 0
            sender, recipient = (
                ("Anna Becker", "LinkedIn Guide") if me_first else ("LinkedIn Guide", "Anna Becker")
            )
            content = f"How do I phrase my headline for role {i}?" if me_first else "Try:\n- lead with impact"
            title = ""
        else:
            sender, recipient, title = "Anna Becker", f"{name} Doe", f"Chat with {name}"
            content = f'Hi {name},\nthanks for the intro to "Project {i}".\n\nBest, Anna'
        urls = [f"https://www.linkedin.com/in/{who.split()[0].lower()}" for who in (sender, recipient)]
        rows.append(
            [
                f"2-{i // 3:04d}abc",
                title,
                sender,
                urls[0],
                recipient,
                urls[1],
                UTC_SECONDS,
                "",
                content,
                "INBOX",
            ]
        )
    return _table(kind, MESSAGES_HEADER, rows, style, bom=bom)


def _profile(style: _Style, *, bom: bool = False) -> ArchiveFile:
    row = (
        f"Anna|Becker||Hauptstraße 5, 10115 Berlin|{BIRTH_DATE}|Data engineer at Example GmbH|"
        "I build data pipelines,\nand I care about privacy.|Software Development|10115|Berlin, Germany|"
        "[annabecker]|[PERSONAL:https://anna.example.org]|"
    )
    return _table("profile", PROFILE_HEADER, [row], style, bom=bom)


def _connections(style: _Style, *, with_url: bool, hidden: int = 0) -> ArchiveFile:
    """The Notes preamble, then the network; ``hidden`` rows hold only a date (a hidden profile)."""
    rows = [
        f"{name}|Doe|https://www.linkedin.com/in/{name.lower()}-doe||Firm {i}|Engineer|{DAY_MONTH_YEAR}"
        for i, name in enumerate(NAMES)
    ]
    rows += [f"||||||{DAY_MONTH_YEAR}"] * hidden
    header = "First Name,Last Name,URL,Email Address,Company,Position,Connected On"
    if not with_url:  # older exports
        header = header.replace("URL,", "")
        rows = ["|".join(r.split("|")[:2] + r.split("|")[3:]) for r in rows]
    return _table("connections", header, rows, style, preamble=CONNECTIONS_NOTES)


def _job_applications(style: _Style, first: int, count: int) -> ArchiveFile:
    rows = [
        [
            US_SHORT,
            "anna@example.org",
            "+49 30 1234567",
            f"Company {i}",
            "Data Engineer",
            f"https://www.linkedin.com/jobs/view/{4000 + i}",
            "Anna_Becker_CV.pdf",
            "Years of experience with Python?: 8 | Willing to relocate?: No",
        ]
        for i in range(first, first + count)
    ]
    return _table("job_applications", JOB_APPLICATIONS_HEADER, rows, style)


def _receipts(style: _Style, count: int) -> ArchiveFile:
    rows = [
        f"Anna|Becker|DE|10115|{PLAIN_SECONDS}|VISA|INV-{100 + i}|Premium Career|5.70|29.99|35.69|EUR"
        for i in range(count)
    ]
    return _table("receipts", RECEIPTS_HEADER, rows, style)


def _dated(kind: str, header: str, count: int, style: _Style) -> ArchiveFile:
    """A simple activity file: a date, then generated values."""
    names = columns(header)
    rows = [[PLAIN_SECONDS, *(f"{column} {i}" for column in names[1:])] for i in range(count)]
    return _table(kind, names, rows, style)


def _complete() -> dict[str, ArchiveFile]:
    s = OLD
    return {
        "Profile.csv": _profile(s),
        "Positions.csv": _table(
            "positions", "Company Name,Title,Description,Location,Started On,Finished On",
            [f"Example GmbH|Data Engineer|Pipelines, lineage|Berlin|{MONTH_YEAR}|",
             "Old Corp|Analyst|Reports|Hamburg|Jan 2015|Dec 2019"], s,
        ),
        "Education.csv": _table(
            "education", "School Name,Start Date,End Date,Notes,Degree Name,Activities",
            ["TU Berlin|2008|2014||MSc Computer Science|Choir"], s,
        ),
        "Skills.csv": _table("skills", "Name", ["Python", "SQL", "Data Engineering"], s),
        "Connections.csv": _connections(s, with_url=False),
        "messages.csv": _messages("messages", 15, s),
        "Receipts.csv": _receipts(s, 3),
        "Jobs/Job Applications_1.csv": _job_applications(s, 0, 6),
        "Jobs/Job Applications_2.csv": _job_applications(s, 6, 4),
        "Rich Media.csv": _table(
            "rich_media", "Date/Time,Media Description,Media Link",
            ["You uploaded a profile photo on March 3, 2021 at 9:14 AM (GMT)||https://media.licdn.com/p1",
             "You uploaded a feed photo on June 1, 2023 at 2:03 PM (GMT)|Team offsite|https://media.licdn.com/p2"],
            s,
        ),
        "Shares.csv": _table(
            "shares", "Date,ShareLink,ShareCommentary,SharedUrl,MediaUrl,Visibility",
            [f'{PLAIN_SECONDS}|https://www.linkedin.com/feed/update/urn:li:share:{i}|'
             f'Post {i}: "data, done right"\nwith a second line|||MEMBER_NETWORK' for i in range(8)],
            s,
        ),
        "Comments.csv": _dated("comments", "Date,Link,Message", 6, s),
        "Reactions.csv": _dated("reactions", "Date,Type,Link", 10, s),
        "Votes.csv": _dated("votes", "Date,Link,OptionText", 2, s),
        "Company Follows.csv": _table(
            "company_follows", "Organization,Followed On", [f"Example GmbH|{US_SHORT}", f"Acme|{US_SHORT}"], s
        ),
        "Invitations.csv": _table(
            "invitations", "From,To,Sent At,Message,Direction,inviterProfileUrl,inviteeProfileUrl",
            [f"Anna Becker|Ben Doe|{US_SHORT}|Great talk yesterday!|OUTGOING|https://www.linkedin.com/in/anna|"
             "https://www.linkedin.com/in/ben"], s,
        ),
        "Inferences_about_you.csv": _table(
            "inferences", "Category,Type of inference,Description,Inference",
            ["Job seeker|Inferred as open to work|Based on your activity|Yes"], s,
        ),
        "Email Addresses.csv": _table(
            "email_addresses", "Email Address,Confirmed,Primary,Updated On",
            [f"anna@example.org|Yes|Yes|{US_SHORT}"], s,
        ),
        "PhoneNumbers.csv": _table("phone_numbers", "Extension,Number,Type", ["|+49301234567|Mobile"], s),
        "Logins.csv": _dated("logins", "Login Date,IP Address,User Agent,Login Type", 5, s),
        "Registration.csv": _table(
            "registration", "Registered At,Registration Ip,Subscription Types",
            [f"{US_SHORT}|192.0.2.10|Premium Career"], s, unrecognised=["Subscription Types"],
        ),
        "SearchQueries.csv": _table(
            "search_queries", "Time,Search Query", [f"{SLASHED_UTC}|data engineer berlin"] * 4, s
        ),
        "Articles/Articles/My first article.html": _html("My first article"),
        # Not in the catalogue: reported as unrecognised, whatever they hold.
        "Whatever_New.csv": _table(None, "Foo,Bar", ["1|2"], s),
        "Account Status History.csv": _table(None, "Time,Event", [f"{SLASHED_UTC}|Account created"], s),
        "messages_backup.csv": _messages(None, 3, s),  # messages' header, but no name the catalogue knows
    }  # fmt: skip


def _basic() -> dict[str, ArchiveFile]:
    s = NEW
    recommendation = "First Name,Last Name,Company,Job Title,Text,Creation Date,Status"
    events = "Event Name,Event Time,Status,External Url"
    jobs = "Saved Date,Job Url,Job Title,Company Name"
    return {
        "Profile.csv": _profile(s, bom=True),
        "Profile Summary.csv": _table("profile_summary", "Profile Summary", ["I build data pipelines."], s),
        "Positions.csv": _table(
            "positions", "Company Name,Title,Description,Location,Started On,Finished On",
            [f"Example GmbH|Data Engineer|Pipelines|Berlin|{MONTH_YEAR}|"], s,
        ),
        "Education.csv": _table(
            "education", "School Name,Start Date,End Date,Notes,Degree Name,Activities",
            ["TU Berlin|2008|2014||MSc|"], s,
        ),
        "Skills.csv": _table("skills", "Name", ["Python", "SQL"], s),
        "Languages.csv": _table(
            "languages", "Name,Proficiency", ["German|Native or bilingual proficiency"], s
        ),
        "Certifications.csv": _table(
            "certifications", "Name,Url,Authority,Started On,Finished On,License Number",
            [f"Cloud Data Engineer||Example Cloud|{MONTH_YEAR}||ABC-123"], s,
        ),
        "Volunteering.csv": _table(
            "volunteering", "Company Name,Role,Cause,Started On,Finished On,Description",
            [f"Code Club|Mentor|Education|{MONTH_YEAR}||Teaching kids to code"], s,
        ),
        "Projects.csv": _table(
            "projects", "Title,Description,Url,Started On,Finished On",
            [f"Open lineage demo|A demo||{MONTH_YEAR}|"], s,
        ),
        "Publications.csv": _table(
            "publications", "Name,Published On,Description,Publisher,Url",
            [f"Consent at scale|{BIRTH_DATE}|An essay|Example Press|"], s,
        ),
        "Endorsement_Received_Info.csv": _table(
            "endorsements_received",
            "Endorsement Date,Skill Name,Endorser First Name,Endorser Last Name,Endorser Public Url,"
            "Endorsement Status",
            [f"{SLASHED_UTC}|Python|{name}|Doe|www.linkedin.com/in/{name.lower()}|ACCEPTED"
             for name in NAMES[:5]],
            s,
        ),
        "Recommendations_Received.csv": _table(
            "recommendations_received", recommendation,
            [f"Ben|Doe|Old Corp|Lead|Anna is great,\nreally.|{US_SHORT}|VISIBLE"], s,
        ),
        "Recommendations_Given.csv": _table(
            "recommendations_given", recommendation,
            [f"Chiara|Doe|Acme|Analyst|Chiara is thorough.|{US_SHORT}|VISIBLE"], s,
        ),
        "Connections.csv": _connections(s, with_url=True, hidden=3),
        "Invitations.csv": _table(
            "invitations", "From,To,Sent At,Message,Direction,inviterProfileUrl,inviteeProfileUrl",
            [f"Dmitri Doe|Anna Becker|{US_SHORT}||INCOMING|https://www.linkedin.com/in/dmitri|"
             "https://www.linkedin.com/in/anna"], s,
        ),
        "Shares_8812345.csv": _table(
            "shares", "Date,ShareLink,ShareCommentary,SharedUrl,MediaUrl,Visibility",
            [f"{PLAIN_SECONDS}|https://www.linkedin.com/feed/update/urn:li:share:{i}|Post {i}|||PUBLIC"
             for i in range(6)],
            s, bom=True,
        ),
        "Comments_8812345.csv": _dated("comments", "Date,Link,Message", 4, s),
        "Reactions_8812345.csv": _dated("reactions", "Date,Type,Link", 12, s),
        "Votes_8812345.csv": _dated("votes", "Date,Link,OptionText", 2, s),
        "InstantReposts.csv": _dated("instant_reposts", "Date,Link", 2, s),
        "Saved_Items_8812345.csv": _table(
            "saved_items", "savedItem,CreatedTime", [f"urn:li:share:9|{PLAIN_SECONDS}"], s
        ),
        "Company_Follows.csv": _table("company_follows", "Organization,Followed On", [f"Acme|{US_SHORT}"], s),
        "Member_Follows.csv": _table(
            "member_follows", "Date,Status,FullName", [f"{PLAIN_SECONDS}|Active|Ben Doe"], s
        ),
        "Hashtag_Follows_8812345.csv": _table(
            "hashtag_follows", "HashTag,CreatedTime,LastModifiedTime,State",
            [f"dataengineering|{PLAIN_SECONDS}|{PLAIN_SECONDS}|Follow"], s,
        ),
        "Events.csv": _table(
            "events", events, ["Data Summit|Feb 8, 2026 - Feb 9, 2026|APPROVED|"], s,
            unrecognised=columns(events),
        ),
        "Rich_Media.csv": _table(
            "rich_media", "Date/Time,Media Description,Media Link",
            ["You uploaded a background photo on January 2, 2026 at 8:00 AM (GMT)||https://media.licdn.com/b"],
            s,
        ),
        "messages.csv": _messages("messages", 12, s, bom=True),
        "guide_messages.csv": _messages("ai_guide_messages", 6, s, ai=True),
        "learning_coach_messages.csv": _messages("ai_learning_coach_messages", 4, s, ai=True, bom=True),
        "learning_role_play_messages.csv": ArchiveFile(
            b"No conversations found\r\n", "ai_role_play_messages", 0
        ),
        "Private_identity_asset.csv": _table(
            "saved_resume", "Private Identity Asset Name,Private Identity Asset Raw Text",
            ["Anna_Becker_CV.pdf|Anna Becker\nData Engineer\n\nExperience:\n- Example GmbH, since 2020"], s,
        ),
        "Jobs/Job Applications.csv": _job_applications(s, 0, 3),
        "Jobs/Job Applicant Saved Answers.csv": _table(
            "job_saved_answers", "Question,Answer", ["First name|Anna", "Mobile phone number|+49301234567"], s
        ),
        "Jobs/Job Applicant Saved Screening Question Responses.csv": _table(
            "job_screening_responses", "Question,Answer",
            ["How many years of work experience do you have with Python?|8"], s,
        ),
        "Jobs/Saved Jobs.csv": _table(
            "saved_jobs", jobs, [f"{US_SHORT}|https://www.linkedin.com/jobs/view/42|Data Engineer|Acme"],
            s, unrecognised=columns(jobs),
        ),
        "Jobs/Job Seeker Preferences.csv": _table(
            "job_seeker_preferences", JOB_SEEKER_HEADER,
            [["Berlin | Remote", "Software Development", "", "Full-time", "Data Engineer", "Yes", "", "Yes",
              "", "", "+49301234567", "", "", "", "", "", "", "RECRUITERS", "ACTIVELY_SEEKING"]],
            s, unrecognised=[c for c in JOB_SEEKER_HEADER if c != "Phone Number"],
        ),
        "Ad_Targeting.csv": _table(
            "ad_targeting", AD_TARGETING_HEADER, [AD_TARGETING_ROW], s,
            unrecognised=["Interface Locales", "interfaceLocale"],
        ),
        "Ads Clicked.csv": _table(
            "ads_clicked", "Ad clicked Date,Ad Title/Id", [f"{SLASHED_UTC}|123456"] * 3, s
        ),
        "LAN Ads Engagement.csv": _table(
            "lan_ads_engagement", "Action,Date,Ad Title/Id,Page/App",
            [f"CLICK|{PLAIN_SECONDS}|98765|news.example.com"], s,
        ),
        "SearchQueries.csv": _table("search_queries", "Time,Search Query", [f"{SLASHED_UTC}|consent"] * 5, s),
        "Learning.csv": _trailing_comma(
            "learning", LEARNING_HEADER,
            ["Learning SQL|Queries, joins\nand more|Course|2025-06-01 14:03 UTC|N/A|false|N/A"], s,
        ),
        "Inferences_about_you.csv": _table(
            "inferences", "Category,Type of inference,Description,Inference",
            ["Decision maker|Inferred as a decision maker|From your profile|Yes"], s,
        ),
        "Email Addresses.csv": _table(
            "email_addresses", "Email Address,Confirmed,Primary,Updated On",
            [f"anna@example.org|Yes|Yes|{US_SHORT}", f"a.becker@example.com|No|No|{US_SHORT}"], s, bom=True,
        ),
        "PhoneNumbers.csv": _table("phone_numbers", "Extension,Number,Type", ["|+49301234567|Mobile"], s),
        "Whatsapp Phone Numbers.csv": _table(
            "whatsapp_phone_numbers", "Number,Extension,Is_WhatsApp_Number", ["+49301234567||true"], s
        ),
        "Registration.csv": _table(
            "registration", "Registered At,Registration Ip,Subscription Types", [f"{US_SHORT}|192.0.2.10|"],
            s, unrecognised=["Subscription Types"],
        ),
        "Logins.csv": _dated("logins", "Login Date,IP Address,User Agent,Login Type", 6, s),
        "Security Challenges.csv": _dated(
            "security_challenges", "Challenge Date,IP Address,User Agent,Country,Challenge Type", 2, s
        ),
        "Receipts_v2.csv": _receipts(s, 2),
        "Articles/Articles/Why consent matters.html": _html("Why consent matters"),
        # Not in the catalogue.
        "Verifications/Verifications.csv": _table(None, "Type,Verified On", [f"Identity|{US_SHORT}"], s),
    }  # fmt: skip


def _two_part() -> tuple[dict[str, ArchiveFile], dict[str, ArchiveFile]]:
    s = NEW
    first = {
        "Profile.csv": _profile(s, bom=True),
        "Skills.csv": _table("skills", "Name", ["Python"], s),
        "Connections.csv": _connections(s, with_url=True, hidden=1),
        "messages.csv": _messages("messages", 5, s),
        "Jobs/Job Applications_1.csv": _job_applications(s, 0, 5),
    }
    second = {
        "Jobs/Job Applications_2.csv": _job_applications(s, 5, 2),
        "Shares.csv": _dated("shares", "Date,ShareLink,ShareCommentary,SharedUrl,MediaUrl,Visibility", 3, s),
        "Comments.csv": _dated("comments", "Date,Link,Message", 2, s),
        "guide_messages.csv": _messages("ai_guide_messages", 2, s, ai=True),
        "Receipts_v2.csv": _receipts(s, 1),
        "Articles/Articles/On data minimisation.html": _html("On data minimisation"),
    }
    return first, second


def _write_zip(
    target: Path, files: dict[str, ArchiveFile], *, top: str = "", directories: bool = False
) -> Path:
    prefix = f"{top}/" if top else ""
    names = [prefix + name for name in files]
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        if directories:
            # Every ancestor folder gets its entry, as zip tools write them.
            folders = sorted(
                {"/".join(n.split("/")[:i]) + "/" for n in names for i in range(1, n.count("/") + 1)}
            )
            for folder in folders:
                archive.writestr(zipfile.ZipInfo(folder, date_time=(2026, 1, 2, 0, 0, 0)), b"")
        for name, file in zip(names, files.values(), strict=True):
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 2, 0, 0, 0)), file.data)
    return target


def complete_export(folder: Path) -> Path:
    """An older Complete export as one ZIP, files at its root."""
    return _write_zip(folder / COMPLETE_ZIP, _complete())


def basic_export(folder: Path) -> Path:
    """A newer Basic export as one ZIP, everything under a top folder."""
    return _write_zip(folder / BASIC_ZIP, _basic(), top=TOP, directories=True)


def two_part_export(folder: Path) -> list[Path]:
    """One export that arrived as two ZIPs."""
    first, second = _two_part()
    return [_write_zip(folder / TWO_PART_ZIPS[0], first), _write_zip(folder / TWO_PART_ZIPS[1], second)]


def folder_export(folder: Path) -> Path:
    """The basic export unpacked; returns its top folder."""
    root = folder / TOP
    for name, file in _basic().items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(file.data)
    return root


def _files() -> dict[str, dict[str, ArchiveFile]]:
    first, second = _two_part()
    basic = _basic()
    return {
        "complete": _complete(),
        "basic": {f"{TOP}/{name}": file for name, file in basic.items()},
        "two_part": first | second,
        "folder": basic,
    }


FILES = _files()
EXPECTED: dict[str, dict[str, str | None]] = {
    fixture: {path: file.kind for path, file in files.items()} for fixture, files in FILES.items()
}
RECORDS: dict[str, dict[str, int]] = {
    fixture: {path: file.records for path, file in files.items()} for fixture, files in FILES.items()
}
UNRECOGNISED_COLUMNS: dict[str, dict[str, list[str]]] = {
    fixture: {path: list(file.unrecognised) for path, file in files.items() if file.unrecognised}
    for fixture, files in FILES.items()
}


def write_all(folder: Path) -> list[Path]:
    """Every fixture shape into ``folder`` (for trying the inspector by hand)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [complete_export(folder), basic_export(folder), *two_part_export(folder), folder_export(folder)]


if __name__ == "__main__":  # python -m tests.inspect.archives DIR
    import sys

    for written in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "fixture-archives")):
        print(written)
