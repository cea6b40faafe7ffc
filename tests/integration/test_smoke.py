"""A first end-to-end pass: produce, apply, count from cache and origin."""

from __future__ import annotations

from tests.integration.harness import Harness


async def test_count_cache_and_origin_agree(app: Harness) -> None:
    await app.create_topic("shop")
    await app.produce(
        "shop",
        [("a", {"cat": "x"}), ("b", {"cat": "y"}), ("c", {"cat": "x"}), ("b", None)],
    )
    await app.wait_warmed("shop")

    cache = await app.count("shop", {"source": "cache", "filters": ["cat", "Eq", "x"]})
    origin = await app.count("shop", {"source": "origin", "filters": ["cat", "Eq", "x"]})

    assert cache["count"] == 2
    assert cache["served_by"] == "cache"
    assert origin["count"] == 2
    assert origin["served_by"] == "origin"
    assert origin["shards_total"] == 3
