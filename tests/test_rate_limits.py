"""Per-address limits that hold: forged ``X-Forwarded-For`` headers do not make new clients, every public
endpoint answers 429 past its rate, and password guessing locks the guesser out (real requests throughout)."""

from __future__ import annotations

import io

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.utils import override_settings
from PIL import Image

pytestmark = pytest.mark.django_db


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def recommendations_with(**values):
    return override_settings(RECOMMENDATIONS={**settings.RECOMMENDATIONS, **values})


def test_seventy_searches_with_forged_forwarded_for_headers_are_limited(client):
    # The default limit (60/minute), no proxy configured: the header is the client's own claim.
    image = png_bytes()
    codes = [
        client.post(
            "/api/search/by-image/",
            {"image": SimpleUploadedFile("photo.png", image, content_type="image/png")},
            HTTP_X_FORWARDED_FOR=f"198.51.100.{i}",
        ).status_code
        for i in range(70)
    ]

    assert codes.count(200) == 60
    assert codes[60:] == [429] * 10


@override_settings(TRUSTED_PROXIES=1)
def test_behind_one_proxy_only_the_address_it_saw_counts(client):
    def similar(forwarded_for: str) -> int:
        return client.get("/api/products/1/similar/", HTTP_X_FORWARDED_FOR=forwarded_for).status_code

    with recommendations_with(SIMILAR_RATE="5/minute"):
        # Whatever the client writes left of the proxy's entry is not believed.
        codes = [similar(f"10.0.0.{i}, 203.0.113.7") for i in range(8)]
        assert codes == [404] * 5 + [429] * 3
        # Another client behind the same proxy has its own count.
        assert similar("203.0.113.8") == 404


@pytest.mark.parametrize(
    ("method", "path", "rate_setting"),
    [
        ("get", "/api/products/999999/similar/", ("RECOMMENDATIONS", "SIMILAR_RATE")),
        ("post", "/api/search/by-image/", ("RECOMMENDATIONS", "IMAGE_SEARCH_RATE")),
        ("get", "/for-you/", ("RECOMMENDATIONS", "PERSONAL_RATE")),
        ("get", "/for-you/game/", ("RECOMMENDATIONS", "PERSONAL_RATE")),
        ("post", "/for-you/feedback/", ("RECOMMENDATIONS", "PERSONAL_RATE")),
        ("get", "/for-you/go/999999/", ("RECOMMENDATIONS", "PERSONAL_RATE")),
        ("get", "/api/recommendations/for-you/", ("RECOMMENDATIONS", "PERSONAL_RATE")),
        ("get", "/c/no-such-campaign/", ("CAMPAIGNS", "LANDING_RATE")),
        ("get", "/c/no-such-campaign/go/1/", ("CAMPAIGNS", "CLICK_RATE")),
        ("post", "/c/events/", ("CAMPAIGNS", "EVENTS_RATE")),
        ("get", "/api/schema/", (None, "API_SCHEMA_RATE")),
    ],
)
def test_every_public_endpoint_is_limited(client, method, path, rate_setting):
    group, name = rate_setting
    if group is None:  # a Django setting of its own
        rate = {name: "3/minute"}
    else:
        rate = {group: {**getattr(settings, group, {}), name: "3/minute"}}
    with override_settings(**rate):
        answers = [getattr(client, method)(path) for _ in range(4)]

    assert [a.status_code == 429 for a in answers] == [False, False, False, True]
    assert int(answers[-1]["Retry-After"]) >= 1


def test_limits_can_be_turned_off_for_load_tests(client):
    with recommendations_with(SIMILAR_RATE="1/minute"), override_settings(RATE_LIMITS_ENABLED=False):
        assert [client.get("/api/products/1/similar/").status_code for _ in range(3)] == [404] * 3


def admin_login(client, username: str, password: str, address: str):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password},
        REMOTE_ADDR=address,
    )


def test_thirty_wrong_passwords_then_the_right_one_is_refused(client, django_user_model):
    django_user_model.objects.create_user("boss", password="right-horse-battery", is_staff=True)

    for i in range(30):
        response = admin_login(client, "boss", f"guess-{i}", "198.51.100.9")
        assert response.status_code == 200 and not response.wsgi_request.user.is_authenticated
    response = admin_login(client, "boss", "right-horse-battery", "198.51.100.9")
    assert response.status_code == 200, "the right password must not log the guesser in while locked"
    assert "_auth_user_id" not in client.session
    assert "Too many failed logins for this username from your address" in response.content.decode()

    # The administrator at another address is not locked out by someone else's guessing.
    response = admin_login(client, "boss", "right-horse-battery", "192.0.2.44")
    assert response.status_code == 302 and response["Location"] == "/admin/"


def test_a_few_typos_do_not_lock_anyone_out(client, django_user_model):
    django_user_model.objects.create_user("clerk", password="right-horse-battery", is_staff=True)

    for i in range(3):
        admin_login(client, "clerk", f"typo-{i}", "198.51.100.10")
    response = admin_login(client, "clerk", "right-horse-battery", "198.51.100.10")
    assert response.status_code == 302


def test_rates_that_do_not_parse_are_reported_at_start_up(settings):
    from campaigns.checks import check_settings as check_campaigns
    from recommendations.checks import check_settings as check_recommendations

    bad = {"SIMILAR_RATE": "lots", "IMAGE_SEARCH_CONCURRENCY": 0}
    settings.RECOMMENDATIONS = {**settings.RECOMMENDATIONS, **bad}
    settings.CAMPAIGNS = {"CLICK_RATE": "5/fortnight", "MAX_CONVERSIONS": {"purchase": -1}}

    recommendation_ids = sorted(e.id for e in check_recommendations(None))
    assert recommendation_ids == ["recommendations.E006", "recommendations.E007"]
    assert sorted(e.id for e in check_campaigns(None)) == ["campaigns.E004", "campaigns.E005"]
