"""Settings of the server bench/load.py starts: the test settings (the benchmark's own database, media and
cache prefix, inherited through the environment) served like production (DEBUG off), plus the ceiling view.

Per-client rate limits would turn a load test from one address into 429s: the bench's client is the only
one, so they are lifted here (and only here).
"""

from config.settings_test import *  # noqa: F403

ROOT_URLCONF = "bench.load_urls"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
RECOMMENDATIONS = {**RECOMMENDATIONS, "IMAGE_SEARCH_RATE": None}  # noqa: F405
