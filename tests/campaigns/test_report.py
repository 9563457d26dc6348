"""The campaign report: per-visitor rates, intervals and lift, in the admin and as CSV."""

from __future__ import annotations

import csv
import io

import pytest

from campaigns.models import CampaignEvent, Creative
from campaigns.selectors import campaign_report
from campaigns.services import save_creative
from campaigns.stats import rate_ratio_lift, wilson_interval
from tests.campaigns.helpers import unit
from tests.factories import jpeg_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign_with_events(vector_product, live_campaign):
    """A hand-made history (described in the comments) of one creative with an A/B split."""
    polo, shirt = vector_product(unit(1, 0, 0, 0)), vector_product(unit(0, 1, 0, 0))
    campaign = live_campaign(control_share_pct=50, control_kind="products")
    creative = campaign.creatives.get()

    def add(session: str, variant: str, kind: str, product=None) -> None:
        CampaignEvent.objects.create(
            campaign=campaign,
            creative=creative,
            variant=variant,
            kind=kind,
            session_key=session,
            product=product,
        )

    # visual: 4 visitors (s1..s4); s1 clicks twice, adds to cart and buys; s2 clicks; s4 came back later.
    for session in ("s1", "s2", "s3", "s4", "s4"):
        add(session, "visual", "impression")
    add("s1", "visual", "click", polo)
    add("s1", "visual", "click", shirt)
    add("s1", "visual", "add_to_cart", polo)
    add("s1", "visual", "purchase", polo)
    add("s2", "visual", "click", shirt)
    # control: 2 visitors; s5 clicks.
    add("s5", "control", "impression")
    add("s6", "control", "impression")
    add("s5", "control", "click", polo)
    # A click without an impression (cookies refused between page and click): counted, but not a visitor.
    add("s7", "visual", "click", polo)
    return campaign


def test_report_arithmetic_matches_the_hand_computed_case(campaign_with_events):
    report = campaign_report(campaign=campaign_with_events)
    visual, control = sorted(report.rows, key=lambda row: row.variant != "visual")

    assert (visual.variant, visual.visitors, visual.impressions, visual.clicks) == ("visual", 4, 5, 4)
    assert (visual.ctr.successes, visual.ctr.trials) == (2, 4)  # s1 and s2 clicked
    assert (visual.add_to_cart.successes, visual.conversion.successes) == (1, 1)
    assert visual.ctr.rate == 0.5
    assert (visual.ctr.low, visual.ctr.high) == pytest.approx(wilson_interval(2, 4))
    # Wilson 2/4 by hand: centre (0.5 + 1.96²/8) / (1 + 1.96²/4) = 0.980183 / 1.960365 = 0.5;
    # half width 1.96 * sqrt(0.0625 + 1.96²/64) / 1.960365 = 0.349960 → 0.1500 .. 0.8500.
    assert visual.ctr.low == pytest.approx(0.150, abs=1e-3) and visual.ctr.high == pytest.approx(
        0.850, abs=1e-3
    )

    assert (control.visitors, control.impressions, control.clicks) == (2, 2, 1)
    assert (control.ctr.successes, control.ctr.trials) == (1, 2)
    assert control.conversion.rate == 0.0

    lifts = {row.metric: row for row in report.lifts}
    assert lifts["CTR"].lift.lift == pytest.approx(0.0)  # 2/4 vs 1/2
    expected = rate_ratio_lift(2, 4, 1, 2)
    assert (lifts["CTR"].lift.low, lifts["CTR"].lift.high) == pytest.approx((expected.low, expected.high))
    assert lifts["Conversion rate"].lift is None  # the control has no purchases


def test_report_page_and_csv_in_the_admin(campaign_with_events, admin_client):
    campaign = campaign_with_events
    page = admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/report/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "50.00 %" in html and "Lift of visual match over control" in html

    response = admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/report.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    by_variant = {row["variant"]: row for row in rows}
    assert by_variant["visual"]["visitors"] == "4" and by_variant["visual"]["clicks"] == "4"
    assert float(by_variant["visual"]["ctr"]) == 0.5
    assert float(by_variant["visual"]["ctr_low"]) == pytest.approx(wilson_interval(2, 4)[0], abs=1e-6)
    assert float(by_variant["visual"]["ctr_lift"]) == pytest.approx(0.0, abs=1e-6)
    assert by_variant["visual"]["conversion_lift"] == ""  # undefined
    assert by_variant["control"]["ctr_lift"] == ""


def test_campaign_wide_lift_pools_the_creatives(campaign_with_events):
    campaign = campaign_with_events
    second = save_creative(
        creative=Creative(campaign=campaign, name="Second", slug="second"),
        image_data=jpeg_bytes((0, 200, 0), 64),
    )
    for session, variant, kind in [
        ("t1", "visual", "impression"),
        ("t1", "visual", "click"),
        ("t2", "control", "impression"),
        ("t2", "control", "click"),
    ]:
        CampaignEvent.objects.create(
            campaign=campaign, creative=second, variant=variant, kind=kind, session_key=session
        )

    overall = [
        row for row in campaign_report(campaign=campaign).lifts if row.creative_name == "All creatives"
    ]
    ctr = next(row for row in overall if row.metric == "CTR")
    assert (ctr.visual.successes, ctr.visual.trials) == (3, 5)
    assert (ctr.control.successes, ctr.control.trials) == (2, 3)
    assert ctr.lift.ratio == pytest.approx((3 / 5) / (2 / 3))


def test_recommended_product_urls_export(vector_product, live_campaign, admin_client):
    near = vector_product(unit(1, 0, 0, 0), title="Near one")
    vector_product(unit(0, 1, 0, 0), title="Far one")
    campaign = live_campaign(product_count=1)
    pending = save_creative(
        creative=Creative(campaign=campaign, name="Not embedded", slug="later"),
        image_data=jpeg_bytes((9, 9, 9), 64),
    )

    response = admin_client.post(
        "/admin/campaigns/campaign/",
        {"action": "export_recommended_urls", "_selected_action": [campaign.pk]},
    )
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(row["creative"], row["rank"], row["product_id"], row["title"]) for row in rows] == [
        ("ad", "1", str(near.pk), "Near one"),
        (pending.slug, "", "", ""),
    ]
    assert rows[0]["product_url"] == f"/products/{near.pk}/"
    assert rows[0]["landing_url"] == f"/c/{campaign.slug}/ad/"
    assert rows[1]["note"] == "creative not embedded yet"
