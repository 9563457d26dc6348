"""Settings for the test suite: the real services, isolated per test run.

Several test runs may share one PostgreSQL and one Valkey (the embedded servers, or DATABASE_URL /
REDIS_URL). Each run gets its own test database, broker key prefix, cache prefix and media folder, derived
from a run id that the Celery worker started by the tests inherits through the environment.
"""

import json
import os
import tempfile
from pathlib import Path

RUN_ID = os.environ.setdefault("LOOKALIKE_TEST_RUN_ID", str(os.getpid()))
os.environ.setdefault("LOOKALIKE_TEST_DB", f"test_lookalike_{RUN_ID}")
os.environ.setdefault("CACHE_KEY_PREFIX", f"test-{RUN_ID}")
# Production refuses to start without a secret key; tests (and the worker they start) use a fixed one.
os.environ.setdefault("DJANGO_SECRET_KEY", "insecure-test-key-never-in-production")

from config.settings import *  # noqa: E402,F403
from config.settings import CELERY_BROKER_TRANSPORT_OPTIONS, DATABASES  # noqa: E402

# Worker processes started by the tests connect straight to the test database.
if os.environ.get("LOOKALIKE_USE_TEST_DB") == "1":
    DATABASES["default"]["NAME"] = os.environ["LOOKALIKE_TEST_DB"]

CELERY_BROKER_TRANSPORT_OPTIONS = {**CELERY_BROKER_TRANSPORT_OPTIONS, "global_keyprefix": f"test-{RUN_ID}:"}
CELERY_TASK_ALWAYS_EAGER = False

MEDIA_ROOT = Path(tempfile.gettempdir()) / f"lookalike-test-media-{RUN_ID}"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEBUG = False
# The test client and the browser talk plain HTTP to 127.0.0.1; media is served by Django (with nosniff).
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
SERVE_MEDIA = True

# The encoder that works offline with real ImageNet weights; tests of mechanics ask for "random" explicitly.
RECOMMENDATIONS = {
    **RECOMMENDATIONS,  # noqa: F405
    "ENCODER": os.environ.get("LOOKALIKE_ENCODER", "efficientnet_lite0"),
    "WEIGHTS": os.environ.get("LOOKALIKE_WEIGHTS", "DEFAULT"),
    "DEVICE": "cpu",
    "TORCH_THREADS": 1,
    "DECODE_WORKERS": 1,
    "BATCH_SIZE": 16,
    # The pipeline's mechanics are tested on the CNN's vectors, which tests compare with the model's own
    # output; tests of colour-aware similarity and adaptation ask for the "combined" recipe themselves.
    "RECIPE": os.environ.get("LOOKALIKE_RECIPE", "cnn"),
}

# Catalog import against the loopback fixture store (tests/scraper/fixture_store.py): politeness relaxed so
# tests take seconds. Allow-listing 127.0.0.1 is not a setting here (other apps read SCRAPER["ALLOW_HOSTS"]):
# tests/scraper/conftest.py sets LOOKALIKE_SCRAPER_ALLOW_HOSTS, which the worker process inherits.
SCRAPER = {
    "DOMAIN_MIN_INTERVAL_S": 0.0,
    "DOMAIN_MAX_CONCURRENCY": 4,
    "BACKOFF_BASE_S": 0.05,
    "MAX_RETRY_AFTER_S": 5.0,
    "CONNECT_TIMEOUT_S": 2.0,
    "READ_TIMEOUT_S": 5.0,
    "TOTAL_TIMEOUT_S": 20.0,
    "IMAGE_TASK_CHUNK_SIZE": 10,  # several scraper.fetch_images tasks even for a small test catalog
}

# Worker processes a test starts with other settings (tests/test_recovery.py: short leases) get them as JSON,
# e.g. {"RECOMMENDATIONS": {"BATCH_LEASE_S": 3}}: each app's dict is updated, not replaced.
for _name, _overrides in json.loads(os.environ.get("LOOKALIKE_TEST_SETTINGS", "{}")).items():
    globals()[_name] = {**globals().get(_name, {}), **_overrides}
