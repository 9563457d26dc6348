"""/for-you/, the preference game, the recommended-for-you widget and the personalisation API, over HTTP."""

from __future__ import annotations

import re

import numpy as np
import pytest
from django.template import Context, Template
from django.test import Client, RequestFactory
from django.urls import reverse

from recommendations import interactions
from recommendations.models import Interaction, ShownProduct
from tests.recommendations.vectors import create_catalog, create_space

pytestmark = pytest.mark.django_db

DIMENSIONS = 8


@pytest.fixture
def catalog(store):
    """80 products in four tight clusters, one category per cluster (cluster i = products[i::4])."""
    from shop.models import Category

    rng = np.random.default_rng(5)
    vectors = np.eye(DIMENSIONS)[np.arange(80) % 4] + 0.08 * rng.normal(size=(80, DIMENSIONS))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    categories = [Category.from_path(["Test", f"Cluster {c}"]) for c in range(4)]
    return create_catalog(store, vectors, space=create_space(DIMENSIONS), categories=categories)


def cluster_of(product_id: int, catalog) -> int:
    return [p.pk for p in catalog].index(product_id) % 4


def cards(html: str, css_class: str = "personal-product") -> list[tuple[int, str]]:
    return [
        (int(pk), role)
        for pk, role in re.findall(
            rf'class="product-card {css_class}" data-product-id="(\d+)" data-role="([\w-]+)"', html
        )
    ]


def game_cards(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'class="game-choice product-card" data-product-id="(\d+)"', html)]


def csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)


def csrf_token(client: Client, html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)[1]


def test_for_you_cold_start_then_likes_shape_the_next_page(catalog):
    client = csrf_client()
    html = client.get(reverse("recommendations:for-you")).content.decode()
    first = cards(html)
    assert len(first) == 10 and {role for _, role in first} == {"cold-start"}
    assert {cluster_of(pk, catalog) for pk, _ in first} == {0, 1, 2, 3}
    assert 'data-cold-start="true"' in html

    liked = next(pk for pk, _ in first if cluster_of(pk, catalog) == 2)
    # The like button is a plain form: it needs the CSRF token and no JavaScript.
    form = {"product": liked, "kind": "like", "source": "for-you", "next": "/for-you/"}
    assert client.post(reverse("recommendations:feedback"), form).status_code == 403
    response = client.post(
        reverse("recommendations:feedback"), {**form, "csrfmiddlewaretoken": csrf_token(client, html)}
    )
    assert response.status_code == 302 and response["Location"] == "/for-you/"
    assert Interaction.objects.get(kind="like").product_id == liked

    second = cards(client.get("/for-you/").content.decode())
    exploit = [pk for pk, role in second if role == "exploit"]
    assert len(exploit) == 5 and {cluster_of(pk, catalog) for pk in exploit} == {2}
    assert len([1 for _, role in second if role == "explore"]) == 5
    assert not {pk for pk, _ in first} & {pk for pk, _ in second}  # never repeated


def test_dislike_and_strategy_parameter(client, catalog):
    client.get("/for-you/")
    for product in catalog[0:8:4]:
        client.post(reverse("recommendations:feedback"), {"product": product.pk, "kind": "like"})
    client.post(reverse("recommendations:feedback"), {"product": catalog[1].pk, "kind": "dislike"})
    for strategy in ("mean", "weighted", "session", "best_score"):
        client.post("/for-you/", {"restart": "1"})  # each strategy starts from the whole catalog
        html = client.get(f"/for-you/?strategy={strategy}").content.decode()
        assert f'data-strategy="{strategy}"' in html
        exploit = [pk for pk, role in cards(html) if role == "exploit"]
        assert {cluster_of(pk, catalog) for pk in exploit} == {0}, strategy
    assert client.get("/for-you/?strategy=astrology").status_code == 400
    bad = client.post(reverse("recommendations:feedback"), {"product": catalog[0].pk, "kind": "adore"})
    assert bad.status_code == 400
    assert (
        client.post(reverse("recommendations:feedback"), {"product": 999999, "kind": "like"}).status_code
        == 404
    )
    # An open redirect through ?next= is refused.
    away = client.post(
        reverse("recommendations:feedback"),
        {"product": catalog[0].pk, "kind": "like", "next": "https://evil.example/"},
    )
    assert away["Location"] == "/for-you/"


def test_catalog_exhausted_then_start_over(client, catalog):
    seen = set()
    for _ in range(8):
        seen |= {pk for pk, _ in cards(client.get("/for-you/").content.decode())}
    assert len(seen) == 80
    html = client.get("/for-you/").content.decode()
    assert cards(html) == [] and "seen every product" in html
    client.post("/for-you/", {"restart": "1"})
    assert len(cards(client.get("/for-you/").content.decode())) == 10


def test_recommended_links_record_the_click_and_redirect(client, catalog):
    product = catalog[7]
    response = client.get(reverse("recommendations:go", args=[product.pk]) + "?source=for-you")
    assert response.status_code == 302 and response["Location"] == product.get_absolute_url()
    click = Interaction.objects.get(kind="click")
    assert (click.product_id, click.source) == (product.pk, "for-you")
    assert client.get(reverse("recommendations:go", args=[999999])).status_code == 404


def test_the_game_round_by_round(client, catalog):
    html = client.get(reverse("recommendations:game")).content.decode()
    round1 = game_cards(html)
    assert len(round1) == 10 and 'data-round="1"' in html
    assert (
        game_cards(client.get("/for-you/game/").content.decode()) == round1
    )  # a reload shows the same round

    pick = next(pk for pk in round1 if cluster_of(pk, catalog) == 1)
    stale = client.post("/for-you/game/", {"pick": pick, "round": "7"})  # not the round on screen: ignored
    assert stale.status_code == 302 and not Interaction.objects.exists()
    client.post("/for-you/game/", {"pick": pick, "round": "1"})
    client.post("/for-you/game/", {"pick": round1[0], "round": "1"})  # a double submit: ignored
    assert list(Interaction.objects.values_list("product_id", "kind", "source")) == [(pick, "like", "game")]

    html = client.get("/for-you/game/").content.decode()
    round2 = game_cards(html)
    assert 'data-round="2"' in html and len(round2) == 10 and not set(round1) & set(round2)
    assert {cluster_of(pk, catalog) for pk in round2[:5]} == {1}  # the exploit half follows the pick
    assert f'data-product-id="{pick}"' in html.split("Your picks so far")[1]

    client.post("/for-you/game/", {"restart": "1"})
    html = client.get("/for-you/game/").content.decode()
    assert 'data-round="1"' in html and "Your picks so far" not in html
    assert ShownProduct.objects.filter(page="game").count() == 10


def test_the_game_ends_when_every_product_was_shown(client, catalog):
    for number in range(1, 9):
        html = client.get("/for-you/game/").content.decode()
        assert f'data-round="{number}"' in html
        client.post("/for-you/game/", {"pick": game_cards(html)[0], "round": number})
    html = client.get("/for-you/game/").content.decode()
    assert game_cards(html) == [] and "seen every product" in html
    assert ShownProduct.objects.filter(page="game").count() == 80


def test_pages_explain_when_nothing_is_embedded_yet(client, make_product):
    make_product(title="Not embedded yet")
    for url in ("/for-you/", "/for-you/game/"):
        html = client.get(url).content.decode()
        assert "embed_catalog" in html, url


def test_interactions_api_records_for_the_session_and_checks_csrf(catalog):
    client = csrf_client()
    html = client.get("/for-you/").content.decode()
    token = csrf_token(client, html)
    url = reverse("recommendations:api-interactions")
    body = {"product": catalog[0].pk, "kind": "add_to_cart", "source": "cart-button"}
    assert client.post(url, body, content_type="application/json").status_code == 403
    response = client.post(url, body, content_type="application/json", headers={"X-CSRFToken": token})
    assert response.status_code == 201
    assert response.json()["kind"] == "add_to_cart" and response.json()["product"] == catalog[0].pk
    stored = Interaction.objects.get(pk=response.json()["id"])
    assert stored.session_key == client.session[interactions.SESSION_SHOPPER_KEY]
    bad = client.post(
        url,
        {"product": 999999, "kind": "wink"},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert bad.status_code == 400 and set(bad.json()["errors"]) == {"product", "kind"}


def test_for_you_api_purchases_profile_and_nothing(client, catalog):
    url = reverse("recommendations:api-for-you")
    empty = client.get(url).json()
    assert empty == {"basis": "none", "strategy": "weighted", "count": 0, "results": []}
    client.get("/for-you/")
    client.post(reverse("recommendations:api-interactions"), {"product": catalog[3].pk, "kind": "like"})
    profile = client.get(url, {"limit": 4, "strategy": "mean"}).json()
    assert profile["basis"] == "profile" and profile["strategy"] == "mean" and profile["count"] == 4
    assert {cluster_of(item["id"], catalog) for item in profile["results"]} == {3}
    client.post(reverse("recommendations:api-interactions"), {"product": catalog[2].pk, "kind": "purchase"})
    bought = client.get(url, {"limit": 6}).json()
    assert bought["basis"] == "purchases" and bought["count"] == 6
    assert {cluster_of(item["id"], catalog) for item in bought["results"]} == {2}
    assert catalog[2].pk not in [item["id"] for item in bought["results"]]
    assert {"id", "title", "url", "price", "in_stock", "score"} <= set(bought["results"][0])
    assert client.get(url, {"limit": 0}).status_code == 400
    assert client.get(url, {"strategy": "tarot"}).status_code == 400


def test_recommended_for_you_template_tag(client, catalog):
    template = Template("{% load recommendation_tags %}{% recommended_for_you limit=3 %}")
    request = RequestFactory().get("/")
    request.session = client.session
    assert "recommended-for-you" not in template.render(Context({"request": request}))  # nobody yet
    shopper = interactions.shopper_for_request(request)
    interactions.record_interaction(shopper=shopper, product=catalog[5], kind="purchase")
    html = template.render(Context({"request": request}))
    ids = [
        int(pk)
        for pk in re.findall(r'class="product-card recommended-product" data-product-id="(\d+)"', html)
    ]
    assert 'data-basis="purchases"' in html and len(ids) == 3 and catalog[5].pk not in ids
    assert {cluster_of(pk, catalog) for pk in ids} == {1}
    assert f'href="/for-you/go/{ids[0]}/?source=recommended-for-you"' in html


def test_schema_documents_the_personalisation_endpoints(client):
    schema = client.get("/api/schema/", headers={"accept": "application/json"}).content.decode()
    assert "/api/recommendations/for-you/" in schema and "/api/interactions/" in schema


def test_for_you_leaves_out_what_the_shopper_liked_or_disliked(client, catalog):
    # Likes from elsewhere (the game's picks are likes): the products were never shown on /for-you/.
    liked = [product.pk for product in catalog[2:40:4]]
    for pk in liked:
        client.post(reverse("recommendations:feedback"), {"product": pk, "kind": "like"})
    disliked = catalog[3].pk
    client.post(reverse("recommendations:feedback"), {"product": disliked, "kind": "dislike"})
    page = cards(client.get("/for-you/").content.decode())
    shown = {pk for pk, _ in page}
    assert not shown & {*liked, disliked}
    exploit = [pk for pk, role in page if role == "exploit"]
    assert len(exploit) == 5 and {cluster_of(pk, catalog) for pk in exploit} == {2}


def test_strategy_controls_and_roles_are_for_staff_only(client, catalog, django_user_model):
    html = client.get("/for-you/").content.decode()
    assert 'class="strategies' not in html and 'class="role' not in html
    assert "👍" not in html and 'class="icon icon-like"' in html
    staff = django_user_model.objects.create_user("merchandiser", password="x", is_staff=True)
    client.force_login(staff)
    html = client.get("/for-you/?strategy=mean").content.decode()
    assert 'class="strategies staff-only"' in html and 'class="role staff-only"' in html
