"""System checks catch CAMPAIGNS settings that would break tracking."""

from campaigns.checks import check_settings


def test_valid_defaults_pass(settings):
    settings.CAMPAIGNS = {}
    assert check_settings(None) == []


def test_bad_values_are_reported(settings):
    settings.CAMPAIGNS = {
        "DEDUP_WINDOW_S": 0,
        "BOT_USER_AGENT_PATTERN": "(unclosed",
        "ATTRIBUTION_COOKIE": "lk_sid",
        "DEDUP_WINDOWS": 60,
    }
    ids = sorted(problem.id for problem in check_settings(None))
    assert ids == ["campaigns.E001", "campaigns.E002", "campaigns.E003", "campaigns.W001"]


def test_cache_windows_may_be_zero_but_not_negative(settings):
    settings.CAMPAIGNS = {"CREATIVE_CACHE_S": 0, "STOCK_RECHECK_S": 0}
    assert check_settings(None) == []
    settings.CAMPAIGNS = {"CREATIVE_CACHE_S": -1, "STOCK_RECHECK_S": "1"}
    assert [problem.id for problem in check_settings(None)] == ["campaigns.E006", "campaigns.E006"]
