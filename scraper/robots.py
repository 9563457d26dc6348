"""robots.txt rules per origin, cached in this process and optionally in Redis for every worker.

The HTTP client (``scraper.http``) fetches robots.txt once per origin and decides the verdict: the file's
rules, "allow all" (404 and other 4xx) or "disallow all" (429, 5xx, network failure; Google's rule: a
site whose robots.txt errors may be in trouble). Matching uses ``urllib.robotparser``: prefix rules,
first match wins, no ``*``/``$`` wildcards.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.robotparser
from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["rules", "allow_all", "disallow_all"]


@dataclass
class RobotsRules:
    verdict: Verdict
    body: str = ""
    note: str = ""  # why allow/disallow all, for the refusal message
    parser: urllib.robotparser.RobotFileParser | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.verdict == "rules":
            self.parser = urllib.robotparser.RobotFileParser()
            self.parser.parse(self.body.splitlines())

    def allows(self, url: str, agent: str) -> bool:
        if self.verdict != "rules":
            return self.verdict == "allow_all"
        assert self.parser is not None
        return self.parser.can_fetch(agent, url)

    def crawl_delay_s(self, agent: str) -> float | None:
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(agent)
        return float(delay) if delay is not None else None


class RobotsCache:
    """Per-origin rules with expiry. ``redis_client`` (optional) shares them between processes."""

    def __init__(self, redis_client: Any | None, key_prefix: str) -> None:
        self._redis = redis_client
        self._key_prefix = key_prefix
        self._local: dict[str, tuple[float, RobotsRules]] = {}
        self._lock = threading.Lock()

    def get(self, origin: str) -> RobotsRules | None:
        with self._lock:
            cached = self._local.get(origin)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        if self._redis is not None:
            key = f"{self._key_prefix}:{origin}"
            stored = self._redis.get(key)
            ttl_ms = self._redis.pttl(key) if stored else -1
            if stored and ttl_ms > 0:
                data = json.loads(stored)
                rules = RobotsRules(verdict=data["verdict"], body=data["body"], note=data["note"])
                with self._lock:
                    self._local[origin] = (time.monotonic() + ttl_ms / 1000, rules)
                return rules
        return None

    def put(self, origin: str, rules: RobotsRules, ttl_s: float) -> None:
        with self._lock:
            self._local[origin] = (time.monotonic() + ttl_s, rules)
        if self._redis is not None:
            payload = json.dumps({"verdict": rules.verdict, "body": rules.body, "note": rules.note})
            self._redis.set(f"{self._key_prefix}:{origin}", payload, px=max(1, int(ttl_s * 1000)))
