"""Import tests fetch from the fixture store on 127.0.0.1, which the scraper refuses unless allow-listed.

Set at collection time, before any Celery worker process is started, so the worker inherits it.
"""

import os

os.environ.setdefault("LOOKALIKE_SCRAPER_ALLOW_HOSTS", "127.0.0.1")
