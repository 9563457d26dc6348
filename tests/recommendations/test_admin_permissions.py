"""Admin actions need the change permission: a view-only staff user sees the lists but cannot act."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from recommendations.models import EmbeddingSpace

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer() -> Client:
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_embeddingspace"))
    client = Client()
    client.force_login(user)
    return client


def test_a_view_only_user_cannot_activate_an_embedding_space(viewer):
    active = EmbeddingSpace.objects.create(encoder="resnet50", weights_id="a", dimensions=4, state="active")
    ready = EmbeddingSpace.objects.create(encoder="resnet18", weights_id="b", dimensions=4, state="building")
    changelist = "/admin/recommendations/embeddingspace/"

    page = viewer.get(changelist)
    assert page.status_code == 200
    assert "Activate: queries use this space" not in page.content.decode()
    for action in ("activate", "queue_missing_images"):
        viewer.post(changelist, {"action": action, "_selected_action": [ready.pk]})

    active.refresh_from_db()
    ready.refresh_from_db()
    assert (active.state, ready.state) == ("active", "building")
