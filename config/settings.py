"""Settings of a Lookalike site: production by default; `make demo` and the tests turn development on.

Every value that differs between machines comes from the environment (see README "Settings" and
docs/deployment.md "Security"). With no ``DATABASE_URL`` / ``REDIS_URL`` the embedded PostgreSQL and Valkey
from ``config.embedded`` are used.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config import embedded

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# --- Security: production is the default (docs/deployment.md, "Security") ------------------------------
# DEBUG shows settings, including database and broker passwords, on every error page: only on when asked
# for (`make demo` and the tests do; so may a developer's own machine).
DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        # Sessions, CSRF tokens and campaign attribution tokens are signed with it: a public default would
        # let anyone forge them.
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it to a long random value kept secret, the same on every "
            "web and worker machine (python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
            "or set DJANGO_DEBUG=true on a development machine."
        )
    SECRET_KEY = "insecure-development-key-never-in-production"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

# HTTPS. Behind a proxy or load balancer that terminates TLS, DJANGO_TRUSTED_PROXIES says how many of them
# stand in front of Django: then (and only then) X-Forwarded-Proto tells Django a request came over HTTPS,
# and the client's address is read from X-Forwarded-For, that many hops from the right.
TRUSTED_PROXIES = env_int("DJANGO_TRUSTED_PROXIES", 0)
if TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Browsers remember HSTS for this long: turn it on once HTTPS works for good (31536000 = one year).
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
# Per-address limits of the public endpoints (recommendations.ratelimit): off only for load tests.
RATE_LIMITS_ENABLED = env_bool("LOOKALIKE_RATE_LIMITS", True)
# Django answers /media/ itself only when asked to (the demo, a single-machine setup): files are served
# with nosniff and a sandboxing Content-Security-Policy. Normally the web server does it (docs/deployment.md).
SERVE_MEDIA = env_bool("DJANGO_SERVE_MEDIA", DEBUG)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # ReDoc and Swagger UI served locally: the API docs work offline
    "shop",
    "recommendations",
    "scraper",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.RejectNulBytesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Records a "view" when a product page (RECOMMENDATIONS["PRODUCT_PAGE_URL_NAMES"]) is served.
    "recommendations.middleware.ProductViewMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: DATABASE_URL, else the embedded PostgreSQL ---------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL") or embedded.ensure_postgres().url
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
# Several test runs may share one server; each picks its own test database name.
if os.environ.get("LOOKALIKE_TEST_DB"):
    DATABASES["default"]["TEST"] = {"NAME": os.environ["LOOKALIKE_TEST_DB"]}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Broker and cache: REDIS_URL, else the embedded Valkey --------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL") or embedded.ensure_valkey().url
CACHES = {
    "default": {
        "BACKEND": "config.cache.RedisCache",  # Django's, reusing its Redis client (config/cache.py)
        "LOCATION": os.environ.get("CACHE_URL", REDIS_URL),
        "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "lookalike"),
        "TIMEOUT": 300,
    }
}

# --- Celery (read by config/celery.py with the CELERY_ namespace) --------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    # The sweeper must run even while every scrape worker is busy with long imports.
    "scraper.requeue_stale_jobs": {"queue": "default"},
    "scraper.*": {"queue": "scrape"},
    "recommendations.embed_*": {"queue": "embeddings"},
    "recommendations.adapt_*": {"queue": "embeddings"},
    "campaigns.embed_*": {"queue": "embeddings"},
}
# Tasks are idempotent, so a worker that dies mid-task must hand the message back rather than lose it.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = int(os.environ.get("CELERY_TASK_SOFT_TIME_LIMIT", 30 * 60))
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 60
# Redis redelivers unacked messages after this; it must exceed the longest task's time limit, or a running
# task would be delivered a second time. Imports (12 h) and embedding batches hold their own leases, renewed
# while they run, and the sweepers below requeue them within a lease when a worker dies: a redelivery of a
# leased task that is still running finds the lease held and does nothing.
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 300}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# `celery -A config beat`: forget anonymous shoppers' interactions older than PROFILE_MAX_AGE_S.
# The sweepers requeue work whose worker died (expired leases: SCRAPER["STALE_JOB_S"],
# RECOMMENDATIONS["BATCH_LEASE_S"]); recovery takes at most a lease plus this interval.
SWEEP_INTERVAL_S = float(os.environ.get("LOOKALIKE_SWEEP_INTERVAL_S", 30))
CELERY_BEAT_SCHEDULE = {
    "expire-anonymous-profiles": {"task": "recommendations.expire_profiles", "schedule": 6 * 3600.0},
    "requeue-expired-embedding-batches": {
        "task": "recommendations.requeue_expired_batches",
        "schedule": SWEEP_INTERVAL_S,
        "options": {"expires": SWEEP_INTERVAL_S},  # a sweep nobody ran in time is superseded by the next
    },
    "requeue-stale-import-jobs": {
        "task": "scraper.requeue_stale_jobs",
        "schedule": SWEEP_INTERVAL_S,
        "options": {"expires": SWEEP_INTERVAL_S},
    },
}

# Password logins (the admin's included) are throttled per address and username: config/auth.py.
AUTHENTICATION_BACKENDS = ["config.auth.ThrottledModelBackend"]
LOGIN_THROTTLE = {"MAX_FAILURES": 10, "MAX_FAILURES_PER_ADDRESS": 50, "LOCKOUT_S": 15 * 60}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "var" / "media"))
# Uploaded catalog files and ad images can be large; the apps enforce their own per-file limits.
DATA_UPLOAD_MAX_MEMORY_SIZE = 30 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 24,
    # DRF's own idea of the client address agrees with recommendations.ratelimit.client_ip.
    "NUM_PROXIES": TRUSTED_PROXIES,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Lookalike API",
    "DESCRIPTION": "Visually similar products, image search and personalised recommendations.",
    "VERSION": "1.0.0",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# --- The plugin apps ----------------------------------------------------------------------------------
# The catalog all three apps read and write (lookalike/conf.py; docs/plugin.md). Empty: the bundled shop.
LOOKALIKE: dict[str, object] = {}
RECOMMENDATIONS: dict[str, object] = {
    "ENCODER": os.environ.get("LOOKALIKE_ENCODER", "resnet50"),
    "WEIGHTS": os.environ.get("LOOKALIKE_WEIGHTS", "DEFAULT"),
}
SCRAPER: dict[str, object] = {}
# The bundled shop's layout (templates/base.html) shows nothing per visitor, so landing pages are cached
# with it (docs/campaigns.md, "Caching").
CAMPAIGNS: dict[str, object] = {"CACHE_LAYOUT": True}

LOGIN_URL = "/admin/login/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # httpx logs every request at INFO: one line per product photo during a catalog import.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "httpx": {"level": "WARNING"}},
}
