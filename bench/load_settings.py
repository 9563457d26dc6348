"""Settings of the server bench/load.py starts: the test settings (the benchmark's own database, media and
cache prefix, inherited through the environment) served like production (DEBUG off), plus the ceiling view.

Per-address rate limits (recommendations.ratelimit) would turn a load test from one address into 429s: the
bench's client is the only one, so they are off here (and only here), as ``LOOKALIKE_RATE_LIMITS=off`` does.
"""

from config.settings_test import *  # noqa: F403

ROOT_URLCONF = "bench.load_urls"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
RATE_LIMITS_ENABLED = False
