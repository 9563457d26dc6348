"""Recording interactions, shown-product bookkeeping, product-page views and anonymous-profile expiry."""

from __future__ import annotations

import io
import pathlib
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test.utils import override_settings
from django.utils import timezone

from recommendations import interactions
from recommendations.interactions import Shopper
from recommendations.models import Interaction, ShownProduct

pytestmark = pytest.mark.django_db

ROOT = pathlib.Path(__file__).resolve().parents[2]


def age(rows, *, seconds: float) -> None:
    """Backdate rows (auto_now_add cannot be set on create)."""
    model = type(rows[0])
    column = "created_at" if model is Interaction else "shown_at"
    model.objects.filter(pk__in=[r.pk for r in rows]).update(
        **{column: timezone.now() - timedelta(seconds=seconds)}
    )


def test_record_interaction_stores_the_shopper_and_deduplicates_within_the_window(make_product):
    product = make_product(image=None)
    shopper = Shopper(session_key="s1")
    first = interactions.record_interaction(shopper=shopper, product=product, kind="view", dedup_window_s=60)
    again = interactions.record_interaction(shopper=shopper, product=product, kind="view", dedup_window_s=60)
    other_kind = interactions.record_interaction(
        shopper=shopper, product=product, kind="like", dedup_window_s=60
    )
    assert first is not None and again is None and other_kind is not None
    assert (first.session_key, first.product_id, first.kind) == ("s1", product.pk, "view")
    age([first], seconds=120)
    assert interactions.record_interaction(shopper=shopper, product=product, kind="view", dedup_window_s=60)
    with pytest.raises(ValueError, match="unknown interaction kind"):
        interactions.record_interaction(shopper=shopper, product=product, kind="stare")


def test_shown_products_are_remembered_once_per_page_and_can_be_forgotten(make_product):
    a, b = make_product(image=None), make_product(image=None)
    assert interactions.next_round_number(session_key="s", page="game") == 1
    interactions.record_shown(session_key="s", page="game", product_ids=[a.pk, b.pk], round=1)
    interactions.record_shown(session_key="s", page="game", product_ids=[a.pk], round=2)  # already shown
    interactions.record_shown(session_key="s", page="for-you", product_ids=[a.pk], round=1)
    assert list(
        ShownProduct.objects.filter(page="game").values_list("product_id", "round").order_by("pk")
    ) == [
        (a.pk, 1),
        (b.pk, 1),
    ]
    assert interactions.next_round_number(session_key="s", page="game") == 2
    assert interactions.forget_shown(session_key="s", page="game") == 2
    assert ShownProduct.objects.filter(page="for-you").count() == 1


def test_expire_profiles_forgets_old_anonymous_history_but_keeps_users_and_recent_rows(
    make_product, django_user_model
):
    product = make_product(image=None)
    user = django_user_model.objects.create_user("shopper", password="x" * 12)
    old_anonymous = Interaction.objects.create(session_key="old", product=product, kind="like")
    recent_anonymous = Interaction.objects.create(session_key="new", product=product, kind="like")
    old_user = Interaction.objects.create(session_key="u", user=user, product=product, kind="purchase")
    old_shown = ShownProduct.objects.create(session_key="old", product=product, page="for-you")
    recent_shown = ShownProduct.objects.create(session_key="new", product=product, page="for-you")
    age([old_anonymous, old_user], seconds=3 * 3600)
    age([old_shown], seconds=3 * 3600)

    with override_settings(RECOMMENDATIONS={"PROFILE_MAX_AGE_S": 3600}):
        report = interactions.expire_profiles()
    assert (report.interactions_deleted, report.shown_deleted) == (1, 1)
    assert set(Interaction.objects.values_list("pk", flat=True)) == {recent_anonymous.pk, old_user.pk}
    assert set(ShownProduct.objects.values_list("pk", flat=True)) == {recent_shown.pk}


def test_expire_profiles_command_uses_the_setting_or_the_option(make_product):
    product = make_product(image=None)
    rows = [Interaction.objects.create(session_key=f"s{i}", product=product, kind="view") for i in range(3)]
    age(rows[:1], seconds=10 * 86400)
    age(rows[1:2], seconds=2 * 86400)
    out = io.StringIO()
    with override_settings(RECOMMENDATIONS={"PROFILE_MAX_AGE_S": 5 * 86400}):
        call_command("expire_profiles", stdout=out)
    assert "1 interaction" in out.getvalue() and Interaction.objects.count() == 2
    call_command("expire_profiles", "--max-age-s", "3600", stdout=out)
    assert list(Interaction.objects.values_list("pk", flat=True)) == [rows[2].pk]


def test_the_shopper_key_lives_in_the_session_and_survives_login(client, django_user_model):
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.session = client.session
    assert interactions.shopper_for_request(request, create=False) is None
    shopper = interactions.shopper_for_request(request)
    assert shopper is not None and len(shopper.session_key) == 32
    assert interactions.shopper_for_request(request) == shopper

    # Through real requests: the key set by a page survives login (where Django cycles the session key).
    client.get("/for-you/")
    key = client.session[interactions.SESSION_SHOPPER_KEY]
    user = django_user_model.objects.create_user("alice", password="x" * 12)
    client.force_login(user)
    assert client.session[interactions.SESSION_SHOPPER_KEY] == key


def test_product_page_records_one_view_per_window_through_the_middleware(client, make_product):
    product = make_product(title="Viewed lamp")
    assert client.get(product.get_absolute_url()).status_code == 200
    assert client.get(product.get_absolute_url()).status_code == 200  # a reload is the same view
    views = Interaction.objects.filter(product=product, kind="view")
    assert views.count() == 1 and views.get().source == "product-page"
    assert views.get().session_key == client.session[interactions.SESSION_SHOPPER_KEY]
    # Other pages and missing products record nothing.
    client.get("/")
    client.get("/products/999999/")
    assert Interaction.objects.count() == 1


def test_the_shop_app_does_not_import_recommendations():
    for path in (ROOT / "shop").rglob("*.py"):
        source = path.read_text()
        assert "import recommendations" not in source and "from recommendations" not in source, path


@pytest.mark.django_db(transaction=True)
def test_expiry_task_runs_on_a_real_worker(celery_worker, make_product):
    from recommendations.tasks import expire_profiles_task

    product = make_product(image=None)
    old = Interaction.objects.create(session_key="gone", product=product, kind="view")
    age([old], seconds=400 * 86400)
    result = expire_profiles_task.apply_async().get(timeout=60)
    assert result == {"interactions_deleted": 1, "shown_deleted": 0}
    assert not Interaction.objects.filter(pk=old.pk).exists()
