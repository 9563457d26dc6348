"""evaluate_similarity: label handling, hand-computed scores, and the command against the database."""

import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from recommendations.evaluation import read_labels, score_rankings
from tests.recommendations.vectors import clustered_vectors, create_catalog, create_space


def test_scores_hand_computed_micro_and_macro():
    keys = {"A": "x", "B": "x", "F": "x", "C": "y", "D": "y", "E": "z"}
    rankings = {
        "A": ["B", "C"],  # 1 hit of 2; relevant {B, F}: recall 1/2; hit first: AP = (1/1) / min(2, 2) = 0.5
        "B": ["C", "D"],  # no hit
        "F": ["A", "B"],  # 2 hits: precision 1
        "C": ["A", "D"],  # hit second: precision 0.5, NDCG = (1/log2(3)) / 1 = 0.6309, AP = (1/2) / 1
        "D": ["B", "E"],  # no hit
        "E": ["A", "B"],  # alone in group z: nothing to find, skipped
    }
    result = score_rankings(rankings, keys, k=2)
    assert result.queries == 5 and result.skipped == 1 and result.groups == 2
    # micro precision = (0.5 + 0 + 1 + 0.5 + 0) / 5; macro = mean(x: 1.5/3, y: 0.5/2) = (0.5 + 0.25) / 2
    assert result.micro["precision"] == pytest.approx(0.4)
    assert result.macro["precision"] == pytest.approx(0.375)
    # recall: A 1/2, B 0, F 2/2, C 1/1, D 0
    assert result.micro["recall"] == pytest.approx((0.5 + 0 + 1 + 1 + 0) / 5)
    assert result.per_group["y"]["ndcg"] == pytest.approx((1 / np.log2(3) + 0) / 2)
    assert result.per_group["y"]["map"] == pytest.approx((0.5 + 0) / 2)
    assert result.micro["hit_rate"] == pytest.approx(3 / 5)


def test_labels_drop_duplicate_photos_and_name_missing_columns(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(
        "id,articleType,baseColour,md5\n1,Shirts,Blue,aa\n2,Shirts,Red,bb\n3,Shirts,Blue,aa\n4,Tops,Red,\n"
    )
    labels = read_labels(path, id_column="id", relevant_if=["articleType", "baseColour"], dedupe_column="md5")
    assert labels.keys == {"1": ("Shirts", "Blue"), "2": ("Shirts", "Red"), "4": ("Tops", "Red")}
    assert labels.duplicates_dropped == 1
    with pytest.raises(ValueError, match="no column colour"):
        read_labels(path, id_column="id", relevant_if=["colour"])


@pytest.mark.django_db
def test_command_scores_products_in_the_database(store, tmp_path, capsys):
    from shop.models import Store

    space = create_space(16)
    # Three tight clusters of 10 products, labelled by cluster: every neighbour within a cluster is relevant.
    rng = np.random.default_rng(31)
    centres = rng.normal(size=(3, 16))
    looks = [i % 3 for i in range(30)]
    vectors = np.stack([centres[look] + 0.05 * rng.normal(size=16) for look in looks]).astype(np.float32)
    products = create_catalog(store, vectors, space=space)
    other = Store.objects.create(name="Unlabelled store")
    for i, product in enumerate(create_catalog(other, clustered_vectors(5, 16, seed=32), space=space)):
        product.external_id = f"unlabelled-{i}"
        product.save()
    lines = ["id,look,md5"] + [f"{p.external_id},look-{looks[i]},m{i}" for i, p in enumerate(products)]
    lines.append("not-in-db,look-0,mx")
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    out_json = tmp_path / "out.json"

    call_command("evaluate_similarity", labels=str(labels), relevant_if="look", k=5, json=str(out_json))
    printed = capsys.readouterr().out
    assert "precision@5" in printed and "micro" in printed and "30 labelled products" in printed
    served = json.loads(out_json.read_text())
    assert served["method"] == "served" and served["queries"] == 30 and served["k"] == 5
    assert (
        served["micro"]["precision"] == 1.0 and served["macro"]["hit_rate"] == 1.0 and served["groups"] == 3
    )

    call_command(
        "evaluate_similarity",
        labels=str(labels),
        relevant_if="look",
        k=5,
        json=str(out_json),
        method="exact",
        store=store.pk,
        max_queries=10,
    )
    exact = json.loads(out_json.read_text())
    assert exact["queries"] == 10 and exact["micro"]["precision"] == 1.0


@pytest.mark.django_db
def test_command_errors_are_clear(store, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("id,look\nv0,a\n")
    with pytest.raises(CommandError, match="No embedding space is active"):
        call_command("evaluate_similarity", labels=str(labels), relevant_if="look")
    create_space(16)
    with pytest.raises(CommandError, match="no column colour"):
        call_command("evaluate_similarity", labels=str(labels), relevant_if="colour")
    with pytest.raises(CommandError, match="Only 0 of the 1 labelled products"):
        call_command("evaluate_similarity", labels=str(labels), relevant_if="look")
    with pytest.raises(CommandError, match="No such file|No such"):
        call_command("evaluate_similarity", labels=str(tmp_path / "missing.csv"), relevant_if="look")
