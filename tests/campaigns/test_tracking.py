"""Tracking rules: bots, sticky variant assignment and its split, passthrough parameters, tokens."""

import math
import time

import pytest
from django.core import signing

from campaigns import tracking
from tests.campaigns.helpers import BROWSER_UA


@pytest.mark.parametrize(
    "user_agent",
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "AdsBot-Google (+http://www.google.com/adsbot.html)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0 Safari",
        "curl/8.5.0",
        "python-requests/2.32",
        "",
        None,
    ],
)
def test_bots_and_scripts_are_recognised(user_agent):
    assert tracking.is_bot(user_agent)


@pytest.mark.parametrize(
    "user_agent",
    [
        BROWSER_UA,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
        "Mozilla/5.0 (Linux; Android 9; CUBOT X19) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36",
    ],
)
def test_browsers_are_not_bots(user_agent):
    assert not tracking.is_bot(user_agent)


def test_variant_assignment_is_sticky_per_session():
    keys = [tracking.new_session_key() for _ in range(200)]
    first = [tracking.assign_variant(campaign_id=7, session_key=k, control_share_pct=50) for k in keys]
    again = [tracking.assign_variant(campaign_id=7, session_key=k, control_share_pct=50) for k in keys]
    assert first == again
    assert set(first) == {"visual", "control"}


@pytest.mark.parametrize("share_pct", [10, 30, 50])
def test_variant_split_follows_the_configured_share(share_pct):
    n = 20_000
    control = sum(
        tracking.assign_variant(
            campaign_id=3, session_key=f"session-key-{i:08d}", control_share_pct=share_pct
        )
        == "control"
        for i in range(n)
    )
    expected = n * share_pct / 100
    sigma = math.sqrt(n * share_pct / 100 * (1 - share_pct / 100))
    assert abs(control - expected) < 4 * sigma, (control, expected)


def test_no_share_means_no_control_and_full_share_means_all_control():
    keys = [tracking.new_session_key() for _ in range(100)]
    assert {tracking.assign_variant(campaign_id=1, session_key=k, control_share_pct=0) for k in keys} == {
        "visual"
    }
    assert {tracking.assign_variant(campaign_id=1, session_key=k, control_share_pct=100) for k in keys} == {
        "control"
    }


def test_raising_the_share_only_moves_visual_sessions_into_control():
    keys = [tracking.new_session_key() for _ in range(2000)]
    at_20 = {
        k
        for k in keys
        if tracking.assign_variant(campaign_id=9, session_key=k, control_share_pct=20) == "control"
    }
    at_40 = {
        k
        for k in keys
        if tracking.assign_variant(campaign_id=9, session_key=k, control_share_pct=40) == "control"
    }
    assert at_20 <= at_40


def test_assignments_of_different_campaigns_are_independent():
    keys = [tracking.new_session_key() for _ in range(4000)]
    a = [
        tracking.assign_variant(campaign_id=1, session_key=k, control_share_pct=50) == "control" for k in keys
    ]
    b = [
        tracking.assign_variant(campaign_id=2, session_key=k, control_share_pct=50) == "control" for k in keys
    ]
    both = sum(x and y for x, y in zip(a, b, strict=True))
    assert abs(both - 1000) < 4 * math.sqrt(4000 * 0.25 * 0.75)


def test_passthrough_keeps_utm_and_click_ids_only():
    query = [
        ("utm_source", "google"),
        ("utm_campaign", "polo-summer"),
        ("gclid", "Cj0KCQ"),
        ("fbclid", "IwAR"),
        ("msclkid", "m1"),
        ("ttclid", "t1"),
        ("email", "someone@example.com"),
        ("utm_source", "second value ignored"),
        ("cr", "5"),
    ]
    assert tracking.passthrough_params(query) == [
        ("utm_source", "google"),
        ("utm_campaign", "polo-summer"),
        ("gclid", "Cj0KCQ"),
        ("fbclid", "IwAR"),
        ("msclkid", "m1"),
        ("ttclid", "t1"),
    ]
    assert tracking.utm_of(tracking.passthrough_params(query)) == {
        "utm_source": "google",
        "utm_campaign": "polo-summer",
    }


def test_append_params_merges_into_an_existing_query():
    url = tracking.append_params(
        "https://shop.example/p/1?colour=red&utm_source=old#reviews", [("utm_source", "ad"), ("gclid", "x y")]
    )
    assert url == "https://shop.example/p/1?colour=red&utm_source=ad&gclid=x+y#reviews"
    assert tracking.append_params("/products/4/", []) == "/products/4/"


def test_attribution_token_round_trip_and_tampering():
    attribution = tracking.Attribution(
        campaign_id=4, creative_id=9, variant="control", session_key=tracking.new_session_key()
    )
    token = tracking.make_attribution_token(attribution)
    assert tracking.read_attribution_token(token) == attribution
    with pytest.raises(signing.BadSignature):
        tracking.read_attribution_token(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])
    with pytest.raises(signing.BadSignature):
        tracking.read_attribution_token(
            signing.dumps([4, 9, "control", "short"], salt="campaigns.attribution")
        )


def test_attribution_token_expires():
    attribution = tracking.Attribution(
        campaign_id=1, creative_id=None, variant="visual", session_key=tracking.new_session_key()
    )
    token = tracking.make_attribution_token(attribution)
    time.sleep(1.1)
    with pytest.raises(signing.SignatureExpired):
        tracking.read_attribution_token(token, max_age_s=1)
