"""The ``RECOMMENDATIONS`` settings dict, with its defaults in code."""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Encoder key from recommendations.encoders.ENCODERS; "efficientnet_lite0" works with no internet.
    "ENCODER": "resnet50",
    # "DEFAULT" (official pretrained weights, downloaded once into TORCH_HOME), a local .pth path, or
    # "random" (tests of mechanics only; never used unless asked for).
    "WEIGHTS": "DEFAULT",
    # None = CUDA when available, else CPU.
    "DEVICE": None,
    "BATCH_SIZE": 64,
    # Threads decoding JPEGs ahead of the model.
    "DECODE_WORKERS": 2,
    # torch threads per worker process (None = torch's default).
    "TORCH_THREADS": None,
    # How many image ids one embedding task takes when a whole catalog is fanned out.
    "TASK_CHUNK_SIZE": 256,
    # On CUDA, decode baseline JPEGs on the GPU (nvJPEG); other files are decoded on the CPU either way.
    "GPU_DECODE": True,
    # Catalog images whose header declares more pixels are marked failed before any decoding.
    "MAX_IMAGE_PIXELS": 50_000_000,
    # A worker renews the lease of the batch it embeds every third of this; a batch whose lease has run out
    # (its worker died) is queued again by the sweeper, recommendations.requeue_expired_batches (beat).
    "BATCH_LEASE_S": 60,
    # A batch whose workers died this many times (an image that crashes the decoder?) is marked failed.
    "BATCH_MAX_ATTEMPTS": 3,
    # Batches done longer ago than this are deleted by the sweeper (failed ones are kept for the admin).
    "BATCH_KEEP_S": 24 * 3600,
    # While a new embedding space is being filled, how often it is checked for completeness (then activated).
    "REEMBED_POLL_S": 30,
    # A product's query vector: "primary" (its first image) or "mean" (mean of its images).
    "PRODUCT_VECTOR": "primary",
    # How a photo becomes a vector (recommendations.recipes): "combined" (the CNN's features with the
    # product's colour and pattern) or "cnn" (the CNN's features alone).
    "RECIPE": "combined",
    # Weights of the combined vector's parts; their squares are each part's share of the cosine. Chosen on
    # labelled fashion photos (docs/benchmarks/looks-alike.md): kind and colour count about equally.
    "RECIPE_WEIGHTS": {"cnn": 1.0, "colour": 1.0, "pattern": 0.3},
    # Catalog adaptation (manage.py adapt_embeddings): the adapted space's dimensions, the projection's
    # hidden layer, training epochs, the share of labelled products held out to validate, and the fewest
    # labelled products worth learning from.
    "ADAPT_DIMENSIONS": 256,
    "ADAPT_HIDDEN": 1024,
    "ADAPT_EPOCHS": 6,
    "ADAPT_VALIDATION_SHARE": 0.2,
    "ADAPT_MIN_PRODUCTS": 40,
    # Product attributes (the catalog's ``attributes`` role) read as a product's colour and as the design
    # its colourways share, first found wins; the LOOKALIKE roles ``colour`` / ``group`` take precedence.
    "ADAPT_COLOUR_ATTRIBUTES": ["colour", "color", "basecolour", "base_colour", "colour_name", "color_name"],
    "ADAPT_GROUP_ATTRIBUTES": ["design", "design_code", "style", "style_code", "item_group_id", "group"],
    "SIMILAR_LIMIT": 8,
    # Similar-items answers (API JSON, widget HTML) are cached per product until the catalog changes, and
    # at most this long (changes that send no signal: QuerySet.update(), deletions). 0: no cache.
    "SIMILAR_CACHE_S": 60,
    "SIMILAR_IN_STOCK_ONLY": True,
    # Similar items come from the viewed product's own store (catalogs of several stores do not mix); the
    # widget's store="any" and the API's ?store=any widen one request.
    "SIMILAR_SAME_STORE": True,
    "HNSW_EF_SEARCH": 100,
    "HNSW_MAX_SCAN_TUPLES": 20000,
    # Per-space HNSW index build (recommendations.indexes): graph degree and build-time candidate list.
    "HNSW_M": 16,
    "HNSW_EF_CONSTRUCTION": 64,
    # A build whose graph does not fit in this memory is many times slower (~500 MB per 100k 2,048-d rows).
    "HNSW_BUILD_MEMORY": "1GB",
    # Parallel workers helping the index build; the leader builds too, so cores - 1 (capped by the server's
    # max_parallel_maintenance_workers). 1 halves the build time on two cores.
    "HNSW_BUILD_WORKERS": 1,
    # With diversity > 0, MMR re-ranks this many candidates per requested result.
    "MMR_CANDIDATES": 4,
    # Below this many candidate products a filtered query scans exactly instead of using the index.
    "EXACT_SCAN_THRESHOLD": 2000,
    "NEIGHBOURS_K": 20,
    # Precomputed neighbours older than this are treated as stale and the live query is used.
    "NEIGHBOURS_MAX_AGE_S": 24 * 3600,
    "IMAGE_SEARCH_MAX_BYTES": 10 * 1024 * 1024,
    "IMAGE_SEARCH_MAX_PIXELS": 40_000_000,
    # Pixels an image search may decode: JPEGs are decoded at 1/2 to 1/8 scale and pass; PNG, WebP and GIF
    # are decoded whole (4 bytes a pixel: 8.5 Mpx, a 4K screenshot, is 34 MB), so larger ones are refused
    # (413) rather than cost 160 MB each (docs/benchmarks/image-search.md).
    "IMAGE_SEARCH_MAX_DECODE_PIXELS": 8_500_000,
    # Image searches decoding and embedding at once per machine (all web processes together); others wait up
    # to IMAGE_SEARCH_QUEUE_S seconds, then get 503. Bounds memory and keeps the site's workers free.
    "IMAGE_SEARCH_CONCURRENCY": 2,
    "IMAGE_SEARCH_QUEUE_S": 10,
    # Requests per client address (recommendations.ratelimit; "N/second|minute|hour|day", None: no limit).
    # Image search runs the image model on every request.
    "IMAGE_SEARCH_RATE": "60/minute",
    "SIMILAR_RATE": "600/minute",  # the similar-items API
    "PERSONAL_RATE": "300/minute",  # /for-you/ pages, the preference game and their API
    # --- Personalisation (docs/personalisation.md) ---
    # Shopper profile of /for-you/ and the widget: "mean", "weighted", "session" or "best_score"; a page
    # may ask for another with ?strategy=. weighted honours dislikes and recency and ranks browsing sessions
    # about as well as mean (docs/benchmarks/personalisation.md).
    "PROFILE_STRATEGY": "weighted",
    # The preference game's profile: best_score with the products not picked as negatives finds a target in
    # about 0.04 × the rounds of random browsing (weighted: 0.17 ×).
    "GAME_PROFILE_STRATEGY": "best_score",
    # Products per /for-you/ page and per preference-game round.
    "FOR_YOU_LIMIT": 10,
    "GAME_ROUND_SIZE": 10,
    # Share of each page that explores instead of exploiting the profile (0.5: 5 + 5 of 10).
    "EXPLORE_RATIO": 0.5,
    # How exploration picks: "diverse" (far from everything else on the page) or "random".
    "EXPLORE_MODE": "diverse",
    # Anonymous interactions and shown-product rows older than this are ignored and deleted (expire_profiles).
    "PROFILE_MAX_AGE_S": 30 * 24 * 3600,
    # Only the most recent interactions build a profile: bounded work per page.
    "PROFILE_MAX_INTERACTIONS": 200,
    # How much each kind of interaction counts in the "weighted" profile (dislike is the negative side).
    "INTERACTION_WEIGHTS": {
        "view": 1.0,
        "click": 2.0,
        "like": 4.0,
        "add_to_cart": 5.0,
        "purchase": 6.0,
        "dislike": 4.0,
    },
    # w_n in weighted = w_p·mean(positives) − w_n·mean(negatives) (also the session's long-term part).
    "NEGATIVE_WEIGHT": 0.5,
    # best_score = max cos(positive) − this × max cos(negative). 1.0: a candidate scores above 0 exactly when
    # it is nearer to something liked than to anything rejected (the best setting in the game simulation).
    "BEST_SCORE_NEGATIVE_WEIGHT": 1.0,
    # An interaction this old counts half as much as one made now.
    "INTERACTION_HALF_LIFE_S": 7 * 24 * 3600,
    # Share of the long-term (weighted) profile blended into the "session" profile.
    "SESSION_BLEND": 0.3,
    # A second view of the same product by the same shopper within this window is not recorded again.
    "VIEW_DEDUP_S": 30 * 60,
    # Storefront URL names whose pages record a "view" (recommendations.middleware), with the kwarg holding
    # the product's primary key.
    "PRODUCT_PAGE_URL_NAMES": {"shop:product": "pk"},
    # Purchase-history recommendations use this many of the most recent purchases.
    "PURCHASE_HISTORY_MAX": 10,
}


def app_setting(name: str) -> Any:
    return getattr(settings, "RECOMMENDATIONS", {}).get(name, DEFAULTS[name])
