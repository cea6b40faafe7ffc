"""Prometheus metrics of the applier and the watermark watcher."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

RECORDS_APPLIED: Final = Counter(
    "hevlayer_records_applied_total", "Document upserts and deletes applied to the cache"
)
BAD_RECORDS: Final = Counter(
    "hevlayer_bad_records_total",
    "Records skipped as bad and copied to the dead-letter topic",
    ["namespace"],
)
APPLIER_RETRIES: Final = Counter(
    "hevlayer_applier_retries_total", "Applier batches retried after a Kafka error"
)
WATCH_FAILURES: Final = Counter(
    "hevlayer_watermark_observation_failures_total",
    "Watermark observations that failed",
    ["namespace"],
)
APPLIER_LAG: Final = Gauge(
    "hevlayer_applier_lag_records",
    "Records between the observed end offsets and the applier's next offsets",
    ["namespace"],
)
WATERMARK_MS: Final = Gauge(
    "hevlayer_watermark_ms", "Latest observed watermark in epoch ms", ["namespace"]
)
CACHE_WARMED_THROUGH_MS: Final = Gauge(
    "hevlayer_cache_warmed_through_ms",
    "cache_warmed_through in epoch ms",
    ["namespace"],
)
