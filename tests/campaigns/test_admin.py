"""Admin: the Marketing role (both sides), creative image checks, URL creatives and the bulk ZIP upload."""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from campaigns.models import Campaign, Creative
from tests.factories import create_product, jpeg_bytes

pytestmark = pytest.mark.django_db

AD_JPEG = jpeg_bytes((200, 60, 20), 120)


@pytest.fixture
def marketer() -> Client:
    user = User.objects.create_user("marketer", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketing"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def plain_staff() -> Client:
    user = User.objects.create_user("clerk", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def campaign(db) -> Campaign:
    return Campaign.objects.create(name="Polo summer", slug="polo-summer")


def read_file(field_file) -> bytes:
    with field_file.open("rb") as stream:
        return stream.read()


def campaign_form(**overrides) -> dict:
    empty = ["fallback_url", "store", "min_price", "max_price", "excluded_products", "headline", "intro"]
    data = {
        **dict.fromkeys(empty, ""),
        "name": "Summer polos",
        "slug": "summer-polos",
        "status": "draft",
        "in_stock_only": "on",
        "product_count": "24",
        "columns": "4",
        "show_prices": "on",
        "control_share_pct": "0",
        "control_kind": "category",
        "control_category": "",
        "match": "similar",
    }
    for prefix in ("creatives", "pins", "control_picks"):
        for name, value in (("TOTAL", "0"), ("INITIAL", "0"), ("MIN_NUM", "0"), ("MAX_NUM", "1000")):
            data[f"{prefix}-{name}_FORMS"] = value
    data.update(overrides)
    return data


def creative_form(campaign: Campaign, **overrides) -> dict:
    base = {
        "campaign": campaign.pk,
        "name": "Ad one",
        "slug": "",
        "position": "0",
        "image_url": "",
        "headline": "",
    }
    return {**base, **overrides}


def test_marketing_group_can_create_campaigns_with_creatives_and_read_reports(marketer, store):
    assert marketer.get("/admin/campaigns/campaign/").status_code == 200
    assert marketer.get("/admin/campaigns/campaign/add/").status_code == 200
    data = campaign_form(
        **{
            "creatives-TOTAL_FORMS": "1",
            "creatives-0-name": "Orange polo",
            "creatives-0-slug": "",
            "creatives-0-position": "0",
            "creatives-0-image_url": "",
            "creatives-0-headline": "",
            "creatives-0-image": SimpleUploadedFile("orange.jpg", AD_JPEG, "image/jpeg"),
        }
    )
    response = marketer.post("/admin/campaigns/campaign/add/", data)
    assert response.status_code == 302, response.content.decode()[-3000:]
    campaign = Campaign.objects.get(slug="summer-polos")
    creative = campaign.creatives.get()
    assert (creative.slug, creative.embedding_status, creative.width) == ("orange-polo", "pending", 120)
    assert read_file(creative.image) == AD_JPEG
    assert campaign.created_by.username == "marketer"

    assert marketer.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").status_code == 200
    assert marketer.get(f"/admin/campaigns/campaign/{campaign.pk}/report/").status_code == 200
    assert marketer.get(f"/admin/campaigns/campaign/{campaign.pk}/report.csv").status_code == 200
    assert marketer.get("/admin/campaigns/creative/add/").status_code == 200
    assert marketer.get("/admin/campaigns/campaign/bulk-upload/").status_code == 200


def test_marketing_group_cannot_change_products_stores_imports_or_users(marketer, store):
    product = create_product(store=store, title="Polo")
    # Looking is allowed (to pick products for pins and exclusions) ...
    assert marketer.get("/admin/shop/product/").status_code == 200
    page = marketer.get(f"/admin/shop/product/{product.pk}/change/")
    assert page.status_code == 200 and 'name="title"' not in page.content.decode()  # read-only view
    # ... changing is not.
    change = marketer.post(
        f"/admin/shop/product/{product.pk}/change/", {"title": "Hacked", "store": store.pk}
    )
    assert change.status_code == 403
    product.refresh_from_db()
    assert product.title == "Polo"
    assert marketer.get("/admin/shop/product/add/").status_code == 403
    assert marketer.post(f"/admin/shop/product/{product.pk}/delete/", {"post": "yes"}).status_code == 403
    assert marketer.get("/admin/shop/store/add/").status_code == 403
    assert marketer.post(f"/admin/shop/store/{store.pk}/change/", {"name": "x"}).status_code == 403
    assert marketer.get("/admin/auth/user/").status_code == 403
    assert marketer.get("/admin/auth/user/add/").status_code == 403
    assert marketer.get("/admin/auth/group/").status_code == 403
    for model in apps.get_app_config("scraper").get_models():  # the import jobs, whatever they are called
        assert marketer.get(f"/admin/scraper/{model._meta.model_name}/add/").status_code in (403, 404)
    assert not User.objects.get(username="marketer").has_perm("campaigns.delete_campaign")


def test_staff_outside_the_marketing_group_cannot_use_campaigns(plain_staff, campaign):
    assert plain_staff.get("/admin/campaigns/campaign/add/").status_code == 403
    assert plain_staff.get(f"/admin/campaigns/campaign/{campaign.pk}/report/").status_code == 403
    assert plain_staff.get(f"/admin/campaigns/campaign/{campaign.pk}/report.csv").status_code == 403
    assert plain_staff.get("/admin/campaigns/campaign/bulk-upload/").status_code == 403


def test_a_file_that_is_not_an_image_is_a_clear_form_error(admin_client, campaign):
    upload = SimpleUploadedFile("ad.jpg", b"<html>not an image</html>", "image/jpeg")
    response = admin_client.post(
        "/admin/campaigns/creative/add/", {**creative_form(campaign), "image": upload}
    )
    assert response.status_code == 200
    assert "This is not a usable image: not an image" in response.content.decode()
    assert not Creative.objects.exists()


def test_a_truncated_image_is_a_clear_form_error(admin_client, campaign):
    upload = SimpleUploadedFile("ad.jpg", AD_JPEG[: len(AD_JPEG) // 2], "image/jpeg")
    response = admin_client.post(
        "/admin/campaigns/creative/add/", {**creative_form(campaign), "image": upload}
    )
    assert response.status_code == 200
    assert "corrupt or truncated" in response.content.decode()


def test_a_file_over_the_size_limit_is_a_clear_form_error(admin_client, campaign, settings):
    settings.CAMPAIGNS = {"CREATIVE_MAX_BYTES": 1_000_000}
    big = jpeg_bytes((10, 10, 10), 64) + b"\0" * 1_200_000  # a valid JPEG followed by padding
    upload = SimpleUploadedFile("huge.jpg", big, "image/jpeg")
    response = admin_client.post(
        "/admin/campaigns/creative/add/", {**creative_form(campaign), "image": upload}
    )
    assert response.status_code == 200
    assert "The file is 1.2 MB; creatives may be at most 1 MB." in response.content.decode()
    assert not Creative.objects.exists()


def test_a_creative_needs_an_image_or_a_url(admin_client, campaign):
    response = admin_client.post("/admin/campaigns/creative/add/", creative_form(campaign))
    assert "Upload the ad image or give its URL." in response.content.decode()


class _AdServer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body, content_type = {
            "/ad.jpg": (AD_JPEG, "image/jpeg"),
            "/fake.jpg": (b"<html><body>Error</body></html>", "image/jpeg"),
        }.get(self.path, (b"missing", "text/plain"))
        self.send_response(200 if body != b"missing" else 404)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def ad_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AdServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_creative_from_a_url_is_fetched_through_the_guarded_client(
    admin_client, campaign, ad_server, settings
):
    settings.CAMPAIGNS = {"FETCH_ALLOW_HOSTS": ["127.0.0.1"]}
    response = admin_client.post(
        "/admin/campaigns/creative/add/", creative_form(campaign, image_url=f"{ad_server}/ad.jpg")
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    creative = Creative.objects.get()
    assert read_file(creative.image) == AD_JPEG and creative.sha256 and creative.slug == "ad-one"

    fake = admin_client.post(
        "/admin/campaigns/creative/add/",
        creative_form(campaign, name="Two", image_url=f"{ad_server}/fake.jpg"),
    )
    assert fake.status_code == 200
    assert (
        "The image could not be fetched: expected an image but the body is not one" in fake.content.decode()
    )


def test_private_addresses_are_refused_for_creative_urls(admin_client, campaign, ad_server):
    response = admin_client.post(
        "/admin/campaigns/creative/add/", creative_form(campaign, image_url=f"{ad_server}/ad.jpg")
    )
    assert response.status_code == 200
    assert "The image could not be fetched: 127.0.0.1 is a loopback address." in response.content.decode()
    assert not Creative.objects.exists()


def test_bulk_zip_upload_creates_one_campaign_per_image(
    admin_client, store, django_capture_on_commit_callbacks
):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("summer/orange-polo.jpg", AD_JPEG)
        zf.writestr("summer/navy_shorts.jpg", jpeg_bytes((10, 20, 90), 100))
        zf.writestr("summer/readme.txt", b"not an ad")
        zf.writestr("__MACOSX/._orange-polo.jpg", b"junk")
    upload = SimpleUploadedFile("ads.zip", archive.getvalue(), "application/zip")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(
            "/admin/campaigns/campaign/bulk-upload/",
            {
                "archive": upload,
                "store": store.pk,
                "product_count": "12",
                "in_stock_only": "on",
                "status": "draft",
            },
            follow=True,
        )
    assert response.status_code == 200
    campaigns = Campaign.objects.order_by("name")
    assert [(c.name, c.slug, c.product_count, c.store_id) for c in campaigns] == [
        ("Navy shorts", "navy-shorts", 12, store.pk),
        ("Orange polo", "orange-polo", 12, store.pk),
    ]
    assert all(c.creatives.get().embedding_status == "pending" for c in campaigns)
    assert len(callbacks) == 2  # one embedding task per creative, after commit
    messages = [str(m) for m in response.context["messages"]]
    assert "Created 2 campaigns; their creatives are being embedded." in messages
    assert any(m.startswith("summer/readme.txt: not an image") for m in messages)


def test_bulk_upload_refuses_what_is_not_a_zip(admin_client):
    upload = SimpleUploadedFile("ads.zip", b"PK but not really", "application/zip")
    response = admin_client.post(
        "/admin/campaigns/campaign/bulk-upload/",
        {"archive": upload, "product_count": "12", "status": "draft"},
    )
    assert response.status_code == 200 and "not a readable ZIP archive" in response.content.decode()


def test_marketing_group_sees_product_photos_but_cannot_change_them(marketer, store):
    product = create_product(store=store, title="Polo")
    image = product.images.get()
    page = marketer.get(f"/admin/shop/product/{product.pk}/change/").content.decode()
    assert image.image.url in page  # the photos inline is shown to the read-only viewer
    assert marketer.get("/admin/shop/productimage/").status_code == 200
    assert marketer.get(f"/admin/shop/productimage/{image.pk}/change/").status_code == 200
    change = marketer.post(f"/admin/shop/productimage/{image.pk}/change/", {"position": "5"})
    assert change.status_code == 403


def test_marketing_group_archives_a_campaign_and_keeps_its_events(marketer, campaign):
    from campaigns.models import CampaignEvent

    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.LIVE)
    CampaignEvent.objects.create(campaign=campaign, variant="visual", kind="impression", session_key="s1")
    listing = marketer.get("/admin/campaigns/campaign/").content.decode()
    assert 'value="archive"' in listing and 'value="delete_selected"' not in listing
    response = marketer.post(
        "/admin/campaigns/campaign/", {"action": "archive", "_selected_action": [campaign.pk]}, follow=True
    )
    assert "1 campaign(s) archived" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.ARCHIVED
    assert CampaignEvent.objects.filter(campaign=campaign).count() == 1
    # Out of the default list, still reachable; its landing page redirects like an ended campaign's.
    assert "Polo summer" not in marketer.get("/admin/campaigns/campaign/").content.decode()
    assert "Polo summer" in marketer.get("/admin/campaigns/campaign/?archived=yes").content.decode()
    assert marketer.get(f"/admin/campaigns/campaign/{campaign.pk}/report/").status_code == 200
    assert Client().get(campaign.get_absolute_url()).status_code == 302
