"""Import tests fetch from the fixture store on 127.0.0.1, which the scraper refuses unless allow-listed.

The allow-list is set at collection time, before any Celery worker process is started, so the worker
inherits it. The fixtures: the store serving each module's ``PRODUCT_COUNT`` products, and a shop.
"""

import os
from collections.abc import Iterator

import pytest

from tests.scraper.fixture_store import FixtureStore, run_fixture_store

os.environ.setdefault("LOOKALIKE_SCRAPER_ALLOW_HOSTS", "127.0.0.1")


@pytest.fixture
def fixture_store(request) -> Iterator[FixtureStore]:
    """The fixture store serving the test module's ``PRODUCT_COUNT`` products."""
    with run_fixture_store(product_count=request.module.PRODUCT_COUNT) as running:
        yield running


@pytest.fixture
def shop(db):
    """A store in US dollars (modules that need another define their own)."""
    from shop.models import Store

    return Store.objects.create(name="Fixture store", currency="USD")
