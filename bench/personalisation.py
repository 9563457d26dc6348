"""Personalisation: how fast the preference game finds what a shopper wants, how well profiles rank, and what
the personalised pages cost.

    python bench/personalisation.py [--targets 200] [--sessions 300] [--requests 30] [--scale 0]

1. Target finding on the Myntra photos (embedded once with efficientnet_lite0 and cached under var/cache/):
   rounds of 10 until a hidden target is shown, per profile strategy, judged by the same vectors (optimistic)
   and by labels (independent); baseline: random browsing, simulated on the same targets in this process
   (and its expectation (N/k + 1)/2 ≈ N/(2k)). Then an explore-ratio sweep for the default game strategy.
2. Leave-last-out metrics@10 over simulated label sessions, four strategies and a popularity baseline.
3. Page cost: /for-you/ (cold start and with a profile, per strategy), a preference-game round and the
   for-you API, through the whole Django stack (test client), on a throw-away database holding the Myntra
   vectors as 4,937 products (HNSW index built); baseline: the storefront's product list page, same process.
   ``--scale N`` repeats the page measurements on N synthetic products.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get(
            "LOOKALIKE_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data")
        ),
    )
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--requests", type=int, default=30, help="requests per page measurement")
    parser.add_argument(
        "--scale", type=int, default=0, help="also measure pages on this many synthetic products"
    )
    parser.add_argument("--skip-simulation", action="store_true")
    parser.add_argument("--skip-pages", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


args = parse_args()
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import print_hardware
from bench._database import benchmark_database, percentile_ms


def simulation_part(data) -> None:
    import numpy as np

    from recommendations import profiles, simulation

    n = len(data)
    print(f"\n## Target finding ({args.targets} hidden targets, N = {n:,} photos, rounds of 10)\n")
    targets = np.random.default_rng(0).choice(n, size=min(args.targets, n), replace=False)
    # Random browsing on the same targets: each round shows 10 unseen products uniformly at random, so a
    # target is seen in round ceil(its position in a random order / 10).
    rng = np.random.default_rng(1)
    random_rounds = np.asarray(
        [np.ceil((np.flatnonzero(rng.permutation(n) == t)[0] + 1) / 10) for t in targets]
    )
    print(
        f"random browsing, simulated: mean {random_rounds.mean():.1f} rounds, "
        f"median {np.median(random_rounds):.1f}"
    )
    print(f"random browsing, expected (N/k + 1)/2: {simulation.random_browsing_rounds(n, 10):.1f}\n")
    started = time.perf_counter()
    results = simulation.run_target_finding(
        data, strategies=list(profiles.STRATEGIES), judges=["vectors", "labels"], targets=args.targets
    )
    print(simulation.target_table(results, n=n))
    print(
        "\n(measured ratio to the simulated random baseline: "
        + ", ".join(f"{r.strategy}/{r.judge} {r.mean / random_rounds.mean():.3f}" for r in results)
        + f"; {time.perf_counter() - started:.0f} s)"
    )

    print("\n## Explore ratio (best_score, optimistic judge)\n")
    sweep = simulation.run_target_finding(
        data,
        strategies=["best_score"],
        judges=["vectors"],
        slots=[(10, 0), (8, 2), (5, 5), (2, 8), (0, 10)],
        targets=args.targets,
    )
    random_sweep = simulation.run_target_finding(
        data,
        strategies=["best_score"],
        judges=["vectors"],
        slots=[(5, 5)],
        targets=args.targets,
        explore_mode="random",
    )
    print(simulation.target_table([*sweep, *random_sweep], n=n))
    print("(the last row explores at random instead of for diversity)")

    print(f"\n## Leave-last-out ({args.sessions} simulated sessions, k = 10)\n")
    started = time.perf_counter()
    table = simulation.run_leave_last_out(data, strategies=list(profiles.STRATEGIES), sessions=args.sessions)
    print(simulation.leave_last_out_table(table, k=10))
    print(f"({time.perf_counter() - started:.0f} s)")


def load_catalog(data) -> None:
    """The Myntra vectors as products (one category per articleType), an active space and its HNSW index."""
    from recommendations.indexes import ensure_space_index
    from recommendations.models import EmbeddingSpace, ProductEmbedding
    from shop.models import Category, Product, Store

    store = Store.objects.create(name="Myntra sample")
    categories = {name: Category.from_path(["Fashion", name]) for name in sorted(set(data.article_types))}
    products = Product.objects.bulk_create(
        Product(
            store=store,
            external_id=str(pk),
            title=f"{data.colours[i]} {data.article_types[i]} {pk}",
            price="19.99",
            category=categories[data.article_types[i]],
        )
        for i, pk in enumerate(data.ids)
    )
    space = EmbeddingSpace.objects.create(
        encoder=data.encoder, weights_id=data.weights_id, dimensions=data.vectors.shape[1], state="active"
    )
    ProductEmbedding.objects.bulk_create(
        (
            ProductEmbedding(space=space, product=p, vector=data.vectors[i], image_sha256s=[f"{p.pk:064x}"])
            for i, p in enumerate(products)
        ),
        batch_size=1000,
    )
    ensure_space_index(space)


def measure(name: str, request, rows: list, baseline_ms: float | None = None) -> float:
    timings = []
    for _ in range(args.requests):
        started = time.perf_counter()
        response = request()
        timings.append(time.perf_counter() - started)
        assert response.status_code in (200, 302), (name, response.status_code)
    p50, p95 = percentile_ms(timings, 50), percentile_ms(timings, 95)
    rows.append((name, p50, p95, baseline_ms))
    return p50


def pages_part(label: str) -> None:
    from django.test import Client

    from recommendations.models import Interaction, ShownProduct
    from shop.models import Product

    rows: list = []
    home = Client()
    home.get("/")
    baseline = measure("baseline: storefront product list (24 products)", lambda: home.get("/"), rows)
    ids = list(Product.objects.order_by("pk").values_list("pk", flat=True)[:2000:97])

    cold = Client()
    measure("/for-you/ cold start (no history)", lambda: cold.get("/for-you/"), rows, baseline)
    for strategy in ("mean", "weighted", "session", "best_score"):
        shopper = Client()
        shopper.get("/for-you/")
        for pk in ids[:5]:
            shopper.post("/for-you/feedback/", {"product": pk, "kind": "like"})
        shopper.post("/for-you/feedback/", {"product": ids[6], "kind": "dislike"})
        measure(
            f"/for-you/?strategy={strategy} (5 likes, 1 dislike)",
            lambda s=shopper, st=strategy: s.get(f"/for-you/?strategy={st}"),
            rows,
            baseline,
        )

    player = Client()
    player.get("/for-you/game/")

    def play_round():
        from recommendations.interactions import SESSION_SHOPPER_KEY

        key = player.session[SESSION_SHOPPER_KEY]
        latest = ShownProduct.objects.filter(session_key=key, page="game").order_by("-round", "pk").first()
        player.post("/for-you/game/", {"pick": latest.product_id, "round": latest.round})
        return player.get("/for-you/game/")

    measure("game: pick + next round (best_score)", play_round, rows, baseline)
    buyer = Client()
    buyer.get("/for-you/")
    for pk in ids[:3]:
        buyer.post("/api/interactions/", {"product": pk, "kind": "purchase"}, content_type="application/json")
    measure(
        "GET /api/recommendations/for-you/ (3 purchases)",
        lambda: buyer.get("/api/recommendations/for-you/"),
        rows,
        baseline,
    )

    print(
        f"\n## Page cost, {label} ({args.requests} requests each, "
        "Django test client: server time, no network)\n"
    )
    print("| page | p50 (ms) | p95 (ms) | p50 ÷ baseline p50 |")
    print("|---|---:|---:|---:|")
    for name, p50, p95, base in rows:
        ratio = "1.00" if base is None else f"{p50 / base:.2f}"
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {ratio} |")
    Interaction.objects.all().delete()
    ShownProduct.objects.all().delete()


def main() -> None:
    print_hardware()
    import torch

    torch.set_num_threads(args.threads)
    with benchmark_database("personalisation"):
        from recommendations import simulation

        started = time.perf_counter()
        data = simulation.load_myntra_vectors(
            Path(args.data_dir),
            num_threads=args.threads,
            cache_dir=Path(__file__).resolve().parent.parent / "var" / "cache" / "personalisation",
        )
        print(
            f"\n{len(data):,} distinct Myntra photos, {data.encoder} ({data.weights_id}), loaded in "
            f"{time.perf_counter() - started:.1f} s"
        )
        if not args.skip_simulation:
            simulation_part(data)
        if not args.skip_pages:
            load_catalog(data)
            pages_part(f"{len(data):,} Myntra products ({data.vectors.shape[1]}-d)")
            if args.scale:
                from bench._database import load_synthetic_catalog, synthetic_vectors
                from recommendations.indexes import ensure_space_index
                from recommendations.models import EmbeddingSpace

                load_synthetic_catalog(synthetic_vectors(args.scale, data.vectors.shape[1], seed=0))
                ensure_space_index(EmbeddingSpace.objects.get(state="active"))
                pages_part(f"{args.scale:,} synthetic products ({data.vectors.shape[1]}-d)")


if __name__ == "__main__":
    main()
