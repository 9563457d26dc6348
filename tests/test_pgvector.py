"""pgvector is installed by the migrations and vectors round-trip through Django."""

import numpy as np
import pytest
from django.db import connection
from pgvector import HalfVector, Vector

pytestmark = pytest.mark.django_db


def test_extension_installed_at_least_0_7():
    with connection.cursor() as cursor:
        cursor.execute("select extversion from pg_extension where extname = 'vector'")
        (version,) = cursor.fetchone()
    assert tuple(int(p) for p in version.split(".")[:2]) >= (0, 7)


def test_vector_and_halfvec_round_trip():
    with connection.cursor() as cursor:
        cursor.execute(
            "select '[1,2.5,3]'::vector, '[0.5,0.25,-1]'::halfvec(3), '[1,0]'::vector <=> '[0,1]'::vector"
        )
        vector, halfvec, distance = cursor.fetchone()
    assert np.allclose(Vector.from_text(vector).to_numpy(), [1, 2.5, 3])
    assert np.allclose(HalfVector.from_text(halfvec).to_numpy(), [0.5, 0.25, -1])
    assert distance == pytest.approx(1.0)


def test_halfvec_model_field_round_trip(make_product):
    from recommendations.models import EmbeddingSpace, ProductEmbedding

    space = EmbeddingSpace.objects.create(encoder="test", weights_id="x", dimensions=2048)
    product = make_product()
    values = np.linspace(-1, 1, 2048, dtype=np.float32)
    ProductEmbedding.objects.create(space=space, product=product, vector=values)
    stored = ProductEmbedding.objects.get(space=space, product=product).vector
    # halfvec keeps about 3 significant digits.
    assert np.allclose(np.asarray(stored, dtype=np.float32), values, atol=1e-3)
