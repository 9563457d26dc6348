"""Request parameters echoed in error answers are never run as HTML: a reflected script in ``?strategy=``
stays text, in the answer's bytes and in a real browser (Debian's Chromium through Playwright)."""

from __future__ import annotations

import pytest

PAYLOAD = "<img src=x onerror=alert(document.domain)>"
PAGES = ["/for-you/", "/for-you/game/"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_unknown_strategy_is_answered_as_plain_text(client, path):
    response = client.get(path, {"strategy": PAYLOAD})

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"Unknown strategy" in response.content


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_reflected_script_does_not_run_in_a_browser(page, live_server):
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    for path in PAGES:
        page.goto(f"{live_server.url}{path}?strategy={PAYLOAD}")
        # A broken image would have been requested and its onerror run by now if the payload were HTML.
        page.wait_for_load_state("networkidle")
        assert page.locator("img").count() == 0, path
        assert "Unknown strategy" in page.locator("body").inner_text()
    assert dialogs == []
