"""A landing page that shows the ad's style in other colours, and says why each product matched."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from campaigns import selectors as campaign_selectors
from campaigns.models import Campaign, Creative
from campaigns.services import embed_creative, save_creative
from recommendations import matching
from recommendations.models import ProductEmbedding
from tests.campaigns.helpers import BROWSER_UA, shown_product_ids
from tests.recommendations.test_colourways import embed, import_colourways
from tests.recommendations.test_looks_alike import psychobunny_rows


def labels(html: str) -> list[str]:
    return re.findall(r'<p class="match-label">([^<]*)</p>', html)


@pytest.mark.django_db
def test_other_colours_landing_page_leaves_out_the_ads_colour(store, data_dir):
    by_design = import_colourways(store, data_dir, designs=5)
    space = embed("combined")
    # The ad: another photo of a colourway that is in the catalog (its first photo).
    rows = psychobunny_rows(data_dir, designs=5, per_handle=2)
    firsts = psychobunny_rows(data_dir, designs=5, per_handle=1)
    first_photos = {row["handle"]: row["image"] for row in firsts}
    ad = next(row for row in rows if row["image"] != first_photos[row["handle"]])
    same_colourway = next(p for products in by_design.values() for p in products if p.title == ad["handle"])

    campaigns = {}
    for match in (Campaign.Match.SIMILAR, Campaign.Match.COLOURWAYS):
        campaign = Campaign.objects.create(
            name=f"Ad {match}", slug=f"ad-{match}", status=Campaign.Status.LIVE, product_count=8, match=match
        )
        creative = Creative(campaign=campaign, name="Ad", slug="ad")
        save_creative(
            creative=creative, image_data=(data_dir / "psychobunny" / "images" / ad["image"]).read_bytes()
        )
        assert embed_creative(creative_id=creative.pk) == "embedded"
        campaigns[match] = campaign
    creative = Creative.objects.get(campaign=campaigns[Campaign.Match.COLOURWAYS])
    # The ad's colours are stored with its vector: a page needs no decoding of the ad image.
    assert creative.descriptor is not None
    ad_colour = campaign_selectors.creative_descriptor(creative)
    assert ad_colour is not None
    catalog_colours = matching.descriptors(
        ProductEmbedding.objects.filter(space=space).values_list("product_id", flat=True), space=space
    )
    # The ad and its colourway's catalog photo are the same colour, as the measured threshold reads it.
    assert matching.colour_cosine(ad_colour, catalog_colours[same_colourway.pk]) >= (
        matching.OTHER_COLOUR_MAX_COSINE
    )

    shopper = Client(headers={"user-agent": BROWSER_UA})
    similar = shopper.get(f"/c/{campaigns[Campaign.Match.SIMILAR].slug}/")
    others = shopper.get(f"/c/{campaigns[Campaign.Match.COLOURWAYS].slug}/")
    assert similar.status_code == others.status_code == 200

    similar_ids, other_ids = shown_product_ids(similar), shown_product_ids(others)
    assert same_colourway.pk in similar_ids and same_colourway.pk not in other_ids
    assert len(other_ids) == 8
    for pk in other_ids:
        assert matching.colour_cosine(ad_colour, catalog_colours[pk]) < matching.OTHER_COLOUR_MAX_COSINE
    # Each card says why it matched, where a word helps: the similar page has same-colour products, the
    # other-colours page none.
    assert "same colour" in labels(similar.content.decode())
    assert "same colour" not in labels(others.content.decode())
    assert set(labels(similar.content.decode()) + labels(others.content.decode())) <= {
        "same colour",
        "same pattern",
    }
