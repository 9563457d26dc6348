"""A creative is stored under a name and extension taken from its decoded image, whatever the upload, the
URL or the ZIP entry was called, so a PNG carrying a script uploaded as ``ad.html`` is served as a PNG (with
``nosniff``), never as a page on the admin's origin. Formats outside JPEG, PNG, WebP and GIF are refused."""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from campaigns.models import Campaign, Creative

pytestmark = pytest.mark.django_db

SCRIPT = b"<html><body><script>document.title='owned'</script></body></html>"


def image_bytes(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 60, 20)).save(buffer, fmt)
    return buffer.getvalue()


# A valid PNG (decoders stop at its end) with a page appended: a browser sniffing it would run the script.
POLYGLOT = image_bytes("PNG") + SCRIPT


@pytest.fixture
def campaign() -> Campaign:
    return Campaign.objects.create(name="Polo summer", slug="polo-summer")


def add_creative(admin_client, campaign: Campaign, **fields):
    data = {"campaign": campaign.pk, "name": "Ad", "slug": "", "position": "0", "image_url": ""}
    data["headline"] = ""
    return admin_client.post("/admin/campaigns/creative/add/", {**data, **fields})


def assert_served_as_png(client, creative: Creative) -> None:
    assert creative.image.name.endswith(".png"), creative.image.name
    response = client.get(creative.image.url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert b"".join(response.streaming_content) == POLYGLOT


@pytest.mark.parametrize("name", ["ad.html", "ad.htm", "ad.xhtml", "ad.svg", "ad"])
def test_an_uploaded_png_named_like_a_page_is_stored_and_served_as_png(admin_client, campaign, name):
    response = add_creative(
        admin_client, campaign, image=SimpleUploadedFile(name, POLYGLOT, content_type="text/html")
    )

    assert response.status_code == 302, response.content.decode()[-2000:]
    assert_served_as_png(admin_client, Creative.objects.get())


@pytest.mark.parametrize("fmt", ["TIFF", "BMP"])
def test_formats_outside_the_documented_list_are_refused(admin_client, campaign, fmt):
    upload = SimpleUploadedFile(f"ad.{fmt.lower()}", image_bytes(fmt), content_type=f"image/{fmt.lower()}")
    response = add_creative(admin_client, campaign, image=upload)

    assert response.status_code == 200
    assert f"{fmt} images cannot be creatives: use JPEG, PNG, WebP or GIF." in response.content.decode()
    assert not Creative.objects.exists()


def test_zip_entries_are_named_from_their_images(admin_client, store):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("summer-ad.html", POLYGLOT)
        zf.writestr("winter-ad.tif", image_bytes("TIFF"))
    response = admin_client.post(
        "/admin/campaigns/campaign/bulk-upload/",
        {
            "archive": SimpleUploadedFile("ads.zip", archive.getvalue(), "application/zip"),
            "store": store.pk,
            "product_count": "12",
            "in_stock_only": "on",
            "status": "draft",
        },
        follow=True,
    )

    assert response.status_code == 200
    assert list(Campaign.objects.values_list("name", flat=True)) == ["Summer ad"]
    assert_served_as_png(admin_client, Creative.objects.get())
    messages = [str(m) for m in response.context["messages"]]
    assert "winter-ad.tif: TIFF images cannot be creatives: use JPEG, PNG, WebP or GIF." in messages


class _PageServer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(POLYGLOT)))
        self.end_headers()
        self.wfile.write(POLYGLOT)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def page_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PageServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_creative_url_ending_in_html_is_stored_as_png(admin_client, campaign, page_server, settings):
    settings.CAMPAIGNS = {"FETCH_ALLOW_HOSTS": ["127.0.0.1"]}
    response = add_creative(admin_client, campaign, image_url=f"{page_server}/landing/ad.html?x=1")

    assert response.status_code == 302, response.content.decode()[-2000:]
    assert_served_as_png(admin_client, Creative.objects.get())


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_browser_opening_the_stored_creative_runs_no_script(page, live_server, campaign):
    from campaigns.services import save_creative

    creative = save_creative(creative=Creative(campaign=campaign, name="Ad", slug="ad"), image_data=POLYGLOT)

    response = page.goto(f"{live_server.url}{creative.image.url}")

    assert response is not None and response.headers["content-type"] == "image/png"
    page.wait_for_load_state("load")
    assert page.title() != "owned"
    assert page.evaluate("document.contentType") == "image/png"


def test_files_stored_under_their_upload_names_are_renamed_after_their_content(campaign):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.core.management import call_command

    # As stored before names came from the content.
    old_name = default_storage.save("campaigns/creatives/ab/abcdef.html", ContentFile(POLYGLOT))
    creative = Creative.objects.create(
        campaign=campaign, name="Old", slug="old", image=old_name, sha256="ab" * 32
    )
    jpeg = Creative.objects.create(campaign=campaign, name="Fine", slug="fine", sha256="cd" * 32)
    jpeg.image.save("x.jpg", ContentFile(image_bytes("JPEG")))
    fine_name = jpeg.image.name

    call_command("rename_creative_files")

    creative.refresh_from_db()
    jpeg.refresh_from_db()
    assert creative.image.name == f"campaigns/creatives/ab/{'ab' * 32}.png"
    assert not default_storage.exists(old_name)
    with creative.image.open("rb") as stream:
        assert stream.read() == POLYGLOT
    assert jpeg.image.name == fine_name
