"""``manage.py evaluate_similarity --labels CSV --relevant-if articleType[,baseColour] --k 10``.

Imports nothing: it matches the label rows to products already in the database (by ``--product-field``,
default external_id) and scores the similar items they get, micro and macro averaged.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lookalike.catalog import product_model, products, role_lookup
from recommendations.evaluation import exact_rankings, format_table, read_labels, score_rankings
from recommendations.management.stores import find_store
from recommendations.models import EmbeddingSpace, ProductEmbedding
from recommendations.selectors import ProductFilter, active_space, load_space_vectors, similar_products

MAX_LIMIT = 100


class Command(BaseCommand):
    help = (
        "Score similar items against labels: a result is relevant when it shares the query's values in the "
        "--relevant-if columns. Prints precision, recall, NDCG, hit rate and MAP at k (micro and macro)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--labels", required=True, help="CSV with one row per labelled product")
        parser.add_argument("--id-column", default="id", help="the CSV column holding the product's id")
        parser.add_argument("--relevant-if", required=True, help="comma-separated columns, e.g. articleType")
        parser.add_argument("--k", type=int, default=10)
        parser.add_argument("--json", default=None, help="also write the results (and per-group scores) here")
        parser.add_argument(
            "--product-field",
            default="external_id",
            help="product field matching --id-column (default external_id)",
        )
        parser.add_argument("--store", default=None, help="only products of this store (its name or id)")
        parser.add_argument(
            "--dedupe-column", default=None, help="keep one row per value, e.g. md5 of the image"
        )
        parser.add_argument(
            "--method",
            choices=["served", "exact"],
            default="served",
            help="served: the shop's own similar_products (stored neighbours, HNSW or exact, as configured); "
            "exact: brute force over the labelled products' vectors (the embedding's quality alone)",
        )
        parser.add_argument(
            "--space",
            type=int,
            default=None,
            help="score this embedding space (id) instead of the active one; implies --method exact",
        )
        parser.add_argument("--max-queries", type=int, default=None, help="score a random sample of queries")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, **options) -> None:
        k = options["k"]
        if not 1 <= k <= MAX_LIMIT // 2:
            raise CommandError(f"--k must be between 1 and {MAX_LIMIT // 2}.")
        relevant_if = [name.strip() for name in options["relevant_if"].split(",") if name.strip()]
        try:
            labels = read_labels(
                options["labels"],
                id_column=options["id_column"],
                relevant_if=relevant_if,
                dedupe_column=options["dedupe_column"],
            )
        except (OSError, ValueError) as error:
            raise CommandError(str(error)) from None
        if options["store"] is not None:
            store = find_store(options["store"])
            options["store"] = store.pk
            self.stdout.write(f"Store {store} (id {store.pk}).")
        if options["space"] is not None:
            space = EmbeddingSpace.objects.filter(pk=options["space"]).first()
            if space is None:
                raise CommandError(f"No embedding space {options['space']}.")
            options["method"] = "exact"  # the served path reads the active space only
        else:
            space = active_space()
        if space is None:
            raise CommandError("No embedding space is active: embed the catalog first.")

        labelled = products().filter(**{f"{options['product_field']}__in": list(labels.keys)})
        store_field = role_lookup("store")
        if options["store"] is not None and store_field:
            labelled = labelled.filter(**{store_field: options["store"]})
        key_of = {pk: str(value) for pk, value in labelled.values_list("pk", options["product_field"])}
        embedded = set(
            ProductEmbedding.objects.filter(space=space, product_id__in=list(key_of)).values_list(
                "product_id", flat=True
            )
        )
        keys = {pk: labels.keys[key_of[pk]] for pk in sorted(embedded)}
        if len(keys) < 2:
            raise CommandError(
                f"Only {len(keys)} of the {len(labels.keys):,} labelled products are in the database with an "
                f"embedding in space {space.pk}: import and embed them first."
            )
        queries = sorted(keys)
        if options["max_queries"] and options["max_queries"] < len(queries):
            queries = sorted(random.Random(options["seed"]).sample(queries, options["max_queries"]))

        if options["method"] == "exact":
            vectors = load_space_vectors(space)
            rows = [i for i, pk in enumerate(vectors.product_ids.tolist()) if pk in keys]
            ids = [int(vectors.product_ids[i]) for i in rows]
            ranked_all = exact_rankings(ids, vectors.vectors[rows], k)
            rankings: dict[int, list[int]] = {pk: ranked_all[pk] for pk in queries}
        else:
            # Unlabelled (or de-duplicated) products may come back too: ask for more, score the labelled ones.
            filters = ProductFilter(
                in_stock_only=False, store_ids=[options["store"]] if options["store"] is not None else []
            )
            by_pk = product_model()._default_manager.in_bulk(queries)
            rankings = {}
            for pk in queries:
                found = similar_products(product=by_pk[pk], limit=min(MAX_LIMIT, 2 * k), filters=filters)
                rankings[pk] = [item.product.pk for item in found if item.product.pk in keys][:k]

        evaluation = score_rankings(rankings, keys, k)
        title = (
            f"{Path(options['labels']).name}: {len(keys):,} labelled products with embeddings "
            f"({labels.duplicates_dropped:,} duplicate rows dropped), relevant if same "
            f"{' + '.join(relevant_if)}, method {options['method']}, space {space.pk} ({space.encoder})"
        )
        self.stdout.write(format_table(evaluation, title=title))
        if options["json"]:
            payload = {
                "labels": str(options["labels"]),
                "relevant_if": relevant_if,
                "method": options["method"],
                "space": {"id": space.pk, "encoder": space.encoder, "weights_id": space.weights_id},
                "products": len(keys),
                "duplicates_dropped": labels.duplicates_dropped,
                **evaluation.as_dict(),
            }
            Path(options["json"]).write_text(json.dumps(payload, indent=2, sort_keys=True))
            self.stdout.write(f"Wrote {options['json']}")
