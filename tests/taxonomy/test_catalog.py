"""The built-in taxonomy: settings, regions, categories and purposes, as the domain fixes them."""

from __future__ import annotations

import pytest

from consentgate.exceptions import TaxonomyError
from consentgate.taxonomy import REGIONS, SettingGroup, SettingKind, Taxonomy, load_taxonomy

# Listed here, independent of taxonomy/data/regions.yaml, so a wrong data file is caught.
# fmt: off
EU27 = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
    "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
]
# fmt: on
EEA_NON_EU = ["IS", "LI", "NO"]

FIXED_CATEGORIES = [
    "profile.name",
    "profile.skills",
    "profile.positions",
    "profile.education",
    "content.posts",
    "content.comments",
    "groups.messages",
    "ai.interactions",
    "jobs.resumes",
    "jobs.applications",
    "jobs.salary",
    "messages.private",
    "messages.inmail",
    "account.credentials",
    "payment.methods",
    "activity.feed",
    "activity.ad_engagement",
    "affiliate.engagement",
]
FIXED_PURPOSES = ["genai.training", "ads.affiliate_sharing", "ads.affiliate_data"]

PROFILE_AD_ROWS = [
    "ads_connections",
    "ads_companies_followed",
    "ads_groups",
    "ads_education_skills",
    "ads_job_information",
    "ads_employer",
    "ads_display_format",
    "ads_profile_location",
]
CONSENT_AD_ROWS = [
    "ads_inferred_location",
    "ads_interests_traits",
    "ads_age_range",
    "ads_gender",
    "ads_offsite",
    "ads_data_from_others",
    "ads_measurement",
    "ads_affiliate_sharing",
]


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return load_taxonomy()


def test_setting_counts_per_group(taxonomy: Taxonomy) -> None:
    """There are 16 advertising settings and 23 data-privacy settings, advertising first."""
    groups = [s.group for s in taxonomy.settings.values()]
    assert groups.count(SettingGroup.advertising) == 16
    assert groups.count(SettingGroup.privacy) == 23
    assert groups == [SettingGroup.advertising] * 16 + [SettingGroup.privacy] * 23


def test_every_setting_has_english_and_german_texts(taxonomy: Taxonomy) -> None:
    """Every setting has a non-empty label, question and explanation in English and German."""
    for setting in taxonomy.settings.values():
        for text in (setting.label, setting.question, setting.explanation):
            assert text.en.strip(), setting.key
            assert text.de.strip(), setting.key


def test_every_toggle_has_a_default_for_every_region(taxonomy: Taxonomy) -> None:
    """Every toggle has a default for each of the seven regions; actions hold no value."""
    toggles = [s for s in taxonomy.settings.values() if s.kind is SettingKind.toggle]
    assert toggles
    for setting in toggles:
        assert set(setting.defaults) == set(REGIONS), setting.key
    for setting in taxonomy.settings.values():
        if setting.kind is SettingKind.action:
            assert setting.defaults == {}, setting.key
            assert setting.controls == (), setting.key


def test_genai_toggle_has_the_domain_labels(taxonomy: Taxonomy) -> None:
    """The gen-AI toggle exists under its fixed key with the UI's English and German texts."""
    setting = taxonomy.toggle("genai_improvement")
    assert setting.label.en == "Data for Generative AI Improvement"
    assert setting.label.de == "Daten zur Verbesserung generativer KI"
    assert setting.question.en == "Use my data for training content creation AI models"
    assert setting.question.de == "Ihre Daten zum Schulen von KI-Modellen verwenden, um Inhalte zu erstellen"
    assert setting.governs("genai.training", "content.posts")


def test_genai_toggle_is_on_by_default_everywhere(taxonomy: Taxonomy) -> None:
    """The gen-AI toggle is opt-out: on by default in every region (the policy decides scope)."""
    assert all(taxonomy.toggle("genai_improvement").defaults[r] for r in REGIONS)


def test_genai_explanation_says_opt_out_acts_going_forward(taxonomy: Taxonomy) -> None:
    """The gen-AI explanation tells the member that switching off does not undo past training."""
    text = taxonomy.setting("genai_improvement").explanation
    assert "does not undo" in text.en
    assert "nicht rückgängig" in text.de


def test_affiliate_sharing_setting_has_the_domain_labels(taxonomy: Taxonomy) -> None:
    """'Share data with affiliates and partners' exists under its fixed key with EN/DE labels."""
    setting = taxonomy.toggle("ads_affiliate_sharing")
    assert setting.label.en == "Share data with affiliates and partners"
    assert setting.label.de == "Daten mit verbundenen Unternehmen und Partnern teilen"
    assert setting.governs("ads.affiliate_sharing", "activity.feed")
    assert setting.governs("ads.affiliate_data", "affiliate.engagement")


@pytest.mark.parametrize("country", EU27 + EEA_NON_EU)
def test_eea_countries_map_to_eea(taxonomy: Taxonomy, country: str) -> None:
    """Every EU-27 country and Iceland, Liechtenstein and Norway is in the EEA region."""
    assert taxonomy.region_of(country) == "EEA"


def test_eea_has_exactly_thirty_countries(taxonomy: Taxonomy) -> None:
    """The EEA region is exactly EU-27 plus IS, LI, NO (no more, no fewer)."""
    assert len(EU27) == 27
    assert set(taxonomy.regions["EEA"].countries) == set(EU27 + EEA_NON_EU)


@pytest.mark.parametrize(
    ("country", "region"),
    [
        ("CH", "CH"),
        ("GB", "UK"),
        ("CA", "CA"),
        ("HK", "HK"),
        ("CN", "CN"),
        ("US", "ROW"),
        ("IN", "ROW"),
        ("BR", "ROW"),
    ],
)
def test_other_countries_map_to_their_region(taxonomy: Taxonomy, country: str, region: str) -> None:
    """Switzerland, the UK (GB), Canada, Hong Kong and China are own regions; others are ROW."""
    assert taxonomy.region_of(country) == region


@pytest.mark.parametrize("code", ["XX", "UK", "EU", "", "DEU"])
def test_unknown_country_code_has_no_region(taxonomy: Taxonomy, code: str) -> None:
    """A code that is not an assigned ISO 3166-1 alpha-2 code has no region (fail closed)."""
    assert taxonomy.region_of(code) is None


def test_lowercase_country_codes_are_accepted(taxonomy: Taxonomy) -> None:
    """Country codes are matched case-insensitively and ignoring surrounding blanks."""
    assert taxonomy.region_of("de") == "EEA"
    assert taxonomy.region_of("gb") == "UK"
    assert taxonomy.region_of(" us ") == "ROW"


@pytest.mark.parametrize("key", FIXED_CATEGORIES)
def test_fixed_category_keys_exist(taxonomy: Taxonomy, key: str) -> None:
    """Every category key that DESIGN.md §2 fixes is in the taxonomy."""
    assert taxonomy.category(key).key == key


@pytest.mark.parametrize("key", FIXED_PURPOSES)
def test_fixed_purpose_keys_exist(taxonomy: Taxonomy, key: str) -> None:
    """Every purpose key that DESIGN.md §2 fixes is in the taxonomy."""
    assert taxonomy.purpose(key).key == key


def test_never_used_categories_are_marked(taxonomy: Taxonomy) -> None:
    """The data DOMAIN.md §3 says is never used for gen-AI training is marked never_train."""
    never = {
        "messages.private",
        "messages.inmail",
        "account.credentials",
        "payment.methods",
        "jobs.salary",
        "jobs.applications",
    }
    for key in never:
        assert taxonomy.category(key).sensitivity == "never_train", key
    for key in ("profile.name", "content.posts", "groups.messages", "ai.interactions"):
        assert taxonomy.category(key).sensitivity == "normal", key


def test_unknown_keys_raise(taxonomy: Taxonomy) -> None:
    """Looking up an unknown category, purpose or setting raises TaxonomyError."""
    with pytest.raises(TaxonomyError):
        taxonomy.category("profile.nonexistent")
    with pytest.raises(TaxonomyError):
        taxonomy.purpose("genai.nonexistent")
    with pytest.raises(TaxonomyError):
        taxonomy.setting("nonexistent")


def test_action_is_not_a_toggle(taxonomy: Taxonomy) -> None:
    """An action entry such as 'Get a copy of your data' cannot be read as an on/off switch."""
    with pytest.raises(TaxonomyError):
        taxonomy.toggle("get_copy_of_data")


@pytest.mark.parametrize("key", CONSENT_AD_ROWS)
def test_consent_based_ad_rows_default_off_in_eea_and_ch(taxonomy: Taxonomy, key: str) -> None:
    """Consent-based ads rows (inferred and off-platform data) are off in EEA and CH, on in ROW."""
    defaults = taxonomy.toggle(key).defaults
    assert defaults["EEA"] is False
    assert defaults["CH"] is False
    assert defaults["ROW"] is True


@pytest.mark.parametrize("key", PROFILE_AD_ROWS)
def test_profile_ad_rows_default_on_everywhere(taxonomy: Taxonomy, key: str) -> None:
    """Profile-data ads rows (legitimate interest) are on by default in every region."""
    defaults = taxonomy.toggle(key).defaults
    assert all(defaults[r] for r in REGIONS)


def test_advertising_rows_are_exactly_profile_plus_consent_rows(taxonomy: Taxonomy) -> None:
    """The 16 advertising rows are the 8 profile rows and the 8 consent rows, in UI order."""
    ads = [s.key for s in taxonomy.settings.values() if s.group is SettingGroup.advertising]
    assert ads == PROFILE_AD_ROWS + CONSENT_AD_ROWS


def test_profile_ad_rows_govern_personalization_and_affiliate_sharing(taxonomy: Taxonomy) -> None:
    """A profile ads row switches on-platform ads and affiliate sharing for its category only."""
    setting = taxonomy.toggle("ads_connections")
    assert setting.governs("ads.personalization", "profile.connections")
    assert setting.governs("ads.affiliate_sharing", "profile.connections")
    assert not setting.governs("ads.personalization", "profile.skills")
    assert not setting.governs("genai.training", "profile.connections")


def test_ads_off_linkedin_also_stops_affiliate_sharing(taxonomy: Taxonomy) -> None:
    """Turning 'Ads off LinkedIn' off also stops data sharing (DOMAIN.md §5)."""
    setting = taxonomy.toggle("ads_offsite")
    assert setting.governs("ads.offsite", "activity.feed")
    assert setting.governs("ads.affiliate_sharing", "profile.name")


def test_only_the_genai_toggle_governs_genai_training(taxonomy: Taxonomy) -> None:
    """Gen-AI training of any category is governed by exactly one setting, genai_improvement."""
    for category in taxonomy.categories:
        governing = [s.key for s in taxonomy.settings_governing("genai.training", category)]
        assert governing == ["genai_improvement"], category


def test_feature_switches_say_they_govern_no_data_use(taxonomy: Taxonomy) -> None:
    """A toggle without controls tells the member it does not switch AI training or advertising."""
    for setting in taxonomy.settings.values():
        if setting.kind is SettingKind.toggle and not setting.controls:
            assert "AI training or advertising" in setting.explanation.en, setting.key
            assert "KI-Training oder Werbung" in setting.explanation.de, setting.key
