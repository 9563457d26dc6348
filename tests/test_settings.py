"""Production is the default: no debug pages and no public secret key unless a development run asks for
them, and ``check --deploy`` is clean with the variables docs/deployment.md lists. Each case runs a fresh
process with ``config.settings`` (settings are read once per process)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The production variables of docs/deployment.md ("Security"), with example values.
PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "shop.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://shop.example.com",
    "DJANGO_TRUSTED_PROXIES": "1",
    "DJANGO_SECURE_HSTS_SECONDS": "31536000",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "DJANGO_SECURE_HSTS_PRELOAD": "true",
}


def run_with_settings(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    # Only what a fresh machine has: nothing the test settings put into this process's environment.
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "LOOKALIKE_TEST", "CELERY_"))
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def show_settings(**env: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SERVE_MEDIA)"
    )
    return run_with_settings(["-c", code], **env)


def test_without_a_secret_key_the_settings_refuse_to_load():
    result = show_settings()

    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY is not set" in result.stderr


def test_with_only_a_secret_key_debug_is_off_and_https_is_required():
    result = show_settings(DJANGO_SECRET_KEY=PRODUCTION_ENV["DJANGO_SECRET_KEY"])

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True", "True", "False"]


def test_development_values_only_when_debug_is_asked_for():
    result = show_settings(DJANGO_DEBUG="true")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "False", "False", "True"]


def test_check_deploy_is_clean_with_the_documented_production_variables():
    command = ["manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    result = run_with_settings(command, **PRODUCTION_ENV)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_complains_without_them():
    result = run_with_settings(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], DJANGO_SECRET_KEY="short"
    )

    assert result.returncode != 0
    assert "security.W009" in result.stderr and "security.W004" in result.stderr
