"""A shop with its own product and image models can install ``recommendations``: the checks in
``tests/own_shop/own_catalog_checks.py`` run in a pytest process of their own, whose settings install the
shop's ``catalogue`` app instead of the bundled ``shop`` (settings cannot change inside one process)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA_DIR

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_plugin_apps_work_against_a_shops_own_catalog_models():
    # Not skipped without the photos: the inner run fails and says where it looked.
    # The inner run names its own test database, cache and broker prefixes after its own pid.
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in ("LOOKALIKE_TEST_RUN_ID", "LOOKALIKE_TEST_DB", "CACHE_KEY_PREFIX", "DJANGO_SETTINGS_MODULE")
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/own_shop/own_catalog_checks.py",
            "--ds=tests.own_shop.settings",
            "--confcutdir=tests/own_shop",  # the main suite's fixtures import the bundled shop
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
        ],
        cwd=ROOT,
        env={**env, "LOOKALIKE_DATA_DIR": str(DATA_DIR)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "7 passed" in output, output
