"""Version counters bumped from signal receivers: once per bulk write, never lost to a failed block."""

from __future__ import annotations

import pytest
from django.db import transaction

from lookalike import versioned_cache

KEY = "tests:versioned-cache:version"
OTHER = "tests:versioned-cache:other"


class Boom(Exception):
    pass


@pytest.mark.django_db
def test_a_bulk_write_bumps_each_counter_once(django_capture_on_commit_callbacks):
    before = versioned_cache.current_version(KEY)
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        transaction.atomic(),
        versioned_cache.coalesced_bumps(),
    ):
        for _ in range(300):  # one call per saved row, as the receivers make them
            versioned_cache.bump_after_commit(KEY)
            with versioned_cache.coalesced_bumps():  # nested: still the outer block's
                versioned_cache.bump_after_commit(OTHER)
        assert callbacks == []  # nothing registered before the block ends
    assert len(callbacks) == 2  # one per counter
    assert versioned_cache.current_version(KEY) == before + 1


@pytest.mark.django_db
def test_a_failed_block_registers_nothing_and_rows_written_again_bump(django_capture_on_commit_callbacks):
    before = versioned_cache.current_version(KEY)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(Boom), versioned_cache.coalesced_bumps():
            versioned_cache.bump_after_commit(KEY)
            raise Boom  # the bulk write failed: its rows are not there
        for _ in range(2):  # written again one by one, outside a block
            versioned_cache.bump_after_commit(KEY)
    assert len(callbacks) == 2
    assert versioned_cache.current_version(KEY) == before + 2


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_bump_is_immediate():
    before = versioned_cache.current_version(KEY)
    versioned_cache.bump_after_commit(KEY)
    assert versioned_cache.current_version(KEY) == before + 1
    with versioned_cache.coalesced_bumps():
        versioned_cache.bump_after_commit(KEY)
        assert versioned_cache.current_version(KEY) == before + 1
    assert versioned_cache.current_version(KEY) == before + 2
