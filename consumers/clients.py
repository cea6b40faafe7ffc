"""Stopping aiokafka clients without losing the caller's own cancellation."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiokafka.errors import KafkaError

logger = logging.getLogger(__name__)


class Stoppable(Protocol):
    async def stop(self) -> None: ...


async def stop_client(client: Stoppable, name: str) -> None:
    """Stop a consumer or producer, swallowing errors raised while it shuts down.

    aiokafka 0.14's fetcher awaits its own cancelled fetch task on close, so
    `stop()` can raise CancelledError even when the caller was not cancelled
    (aio-libs/aiokafka#647). That error is swallowed unless the current task
    really is being cancelled.
    """
    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        logger.debug("stopping %s raised CancelledError from inside aiokafka", name)
    except (KafkaError, OSError) as exc:
        logger.warning("stopping %s failed: %r", name, exc)
