"""The SCRAPER settings: defaults in code, mapped onto the fetch policy, checked at start-up."""

from __future__ import annotations

from scraper.checks import check_catalog
from scraper.conf import app_setting, fetch_policy


def test_settings_map_onto_the_fetch_policy(settings) -> None:
    settings.SCRAPER = {
        "READ_TIMEOUT_S": 3,
        "MAX_IMAGE_BYTES": 1024,
        "USER_AGENT": "ShopBot/2 (+https://s.example)",
    }
    policy = fetch_policy()
    assert (policy.read_timeout_s, policy.max_image_bytes, policy.user_agent) == (
        3.0,
        1024,
        "ShopBot/2 (+https://s.example)",
    )
    assert policy.connect_timeout_s == 5.0  # a default from scraper/conf.py
    assert fetch_policy(max_retries=0).max_retries == 0


def test_allow_hosts_come_from_the_environment_unless_set(settings, monkeypatch) -> None:
    settings.SCRAPER = {}
    monkeypatch.setenv("LOOKALIKE_SCRAPER_ALLOW_HOSTS", "127.0.0.1, fixture.test")
    assert fetch_policy().allow_hosts == frozenset({"127.0.0.1", "fixture.test"})
    settings.SCRAPER = {"ALLOW_HOSTS": []}
    assert fetch_policy().allow_hosts == frozenset()
    assert app_setting("CATALOG_WRITER") == "scraper.catalog.CatalogWriter"


def test_the_system_check_names_wrong_settings(settings) -> None:
    assert check_catalog(None) == []
    settings.LOOKALIKE = {"PRODUCT_FIELDS": {"external_id": "sku"}}
    settings.SCRAPER = {"BATCH_SIZE": 0, "MAX_PAGES": 3}
    errors = check_catalog(None)
    assert sorted(error.id for error in errors) == ["scraper.E002", "scraper.E003", "scraper.E004"]
    assert "LOOKALIKE['PRODUCT_FIELDS']['external_id'] = 'sku'" in errors[0].msg
    settings.LOOKALIKE = {}
    settings.SCRAPER = {"DNS_TIMEOUT_S": 0}
    assert [error.id for error in check_catalog(None)] == ["scraper.E005"]
    settings.SCRAPER = {"DNS_TIMEOUT_S": 2.5}
    assert check_catalog(None) == [] and fetch_policy().dns_timeout_s == 2.5
    settings.SCRAPER = {"CATALOG_WRITER": "scraper.catalog.Nothing"}
    assert [error.id for error in check_catalog(None)] == ["scraper.E001"]
