"""Password guessing is throttled: after ``LOGIN_THROTTLE["MAX_FAILURES"]`` wrong passwords for one username
from one address (or ``MAX_FAILURES_PER_ADDRESS`` for any usernames), that address may not log in as that
user, even with the right password, until ``LOCKOUT_S`` seconds after its last failure.

Counted in the shared cache, so every web process and machine counts together. The address comes from
``recommendations.ratelimit.client_ip`` (forwarded headers only from trusted proxies). Keying on the address
as well as the username means a guesser elsewhere cannot lock the real administrator out.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest

from recommendations.ratelimit import client_ip

DEFAULTS = {"MAX_FAILURES": 10, "MAX_FAILURES_PER_ADDRESS": 50, "LOCKOUT_S": 15 * 60}


def login_setting(name: str) -> int:
    return int({**DEFAULTS, **getattr(settings, "LOGIN_THROTTLE", {})}[name])


def _keys(request: HttpRequest | None, username: str) -> tuple[str, str]:
    address = client_ip(request)
    user_digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return f"login-failures:{address}:{user_digest}", f"login-failures:{address}"


def is_locked_out(request: HttpRequest | None, username: str) -> bool:
    user_key, address_key = _keys(request, username)
    counts = cache.get_many([user_key, address_key])
    return counts.get(user_key, 0) >= login_setting("MAX_FAILURES") or counts.get(
        address_key, 0
    ) >= login_setting("MAX_FAILURES_PER_ADDRESS")


def record_failure(request: HttpRequest | None, username: str) -> None:
    lockout_s = login_setting("LOCKOUT_S")
    for key in _keys(request, username):
        # The lock lasts LOCKOUT_S from the last failure: each one restarts the clock.
        if not cache.add(key, 1, timeout=lockout_s):
            try:
                cache.incr(key)
            except ValueError:  # expired in between
                cache.add(key, 1, timeout=lockout_s)
            cache.touch(key, timeout=lockout_s)


def clear_failures(request: HttpRequest | None, username: str) -> None:
    cache.delete(_keys(request, username)[0])


class ThrottledModelBackend(ModelBackend):
    """Django's username + password check, refused while the address is locked out for that username."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        name = str(username if username is not None else kwargs.get("username", ""))
        if is_locked_out(request, name):
            # PermissionDenied stops authentication here: no other backend is asked, the form says the
            # login failed, and the password is not even checked (no timing to learn from).
            raise PermissionDenied("too many failed logins")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None and password is not None:
            record_failure(request, name)
        else:
            clear_failures(request, name)
        return user


class ThrottledAdminLoginForm(AdminAuthenticationForm):
    """The admin's login form, saying so when the address is locked out (the backend refuses either way)."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "locked_out": "Too many failed logins for this username from your address. "
        "Try again in %(minutes)d minutes.",
    }

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        if username is not None and is_locked_out(self.request, str(username)):
            raise ValidationError(
                self.error_messages["locked_out"],
                code="locked_out",
                params={"minutes": max(1, login_setting("LOCKOUT_S") // 60)},
            )
        return super().clean()
