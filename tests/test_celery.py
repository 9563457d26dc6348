"""A task crosses the real broker to a real worker process and back."""

from django.conf import settings


def test_task_round_trips_through_broker_and_worker(celery_worker):
    from config.celery import app, ping

    result = ping.apply_async(args=["hello"])
    assert result.get(timeout=30) == "hello"
    # It really went to another process: the worker answers inspection by its own name.
    replies = app.control.inspect(timeout=5).ping() or {}
    assert any(name.startswith("test-") for name in replies), replies


def test_routing_puts_work_on_its_own_queues():
    routes = settings.CELERY_TASK_ROUTES
    assert routes["scraper.*"]["queue"] == "scrape"
    assert routes["recommendations.embed_*"]["queue"] == "embeddings"
    assert settings.CELERY_TASK_ACKS_LATE is True
    assert settings.CELERY_TASK_SERIALIZER == "json"
