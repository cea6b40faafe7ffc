"""Fixtures that run the hevlayer app against the session's real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from consumers.settings import Settings
from service.app import create_app
from service.runtime import Runtime
from tests.integration.harness import Harness


class AppFactory:
    """Start apps (one after another, e.g. to restart) and stop them all at the end."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._running: list[tuple[TestClient, Harness]] = []

    async def start(self, custom: Settings | None = None) -> Harness:
        effective = custom or self.settings
        runtime = Runtime(effective)
        client = TestClient(TestServer(create_app(effective, runtime)))
        await client.start_server()
        harness = Harness(effective, client, runtime)
        self._running.append((client, harness))
        return harness

    async def stop(self, harness: Harness) -> None:
        for client, running in list(self._running):
            if running is harness:
                self._running.remove((client, running))
                await running.close()
                await client.close()

    async def stop_all(self) -> None:
        for _client, harness in reversed(list(self._running)):
            await self.stop(harness)


@pytest.fixture
async def apps(settings: Settings) -> AsyncIterator[AppFactory]:
    factory = AppFactory(settings)
    yield factory
    await factory.stop_all()


@pytest.fixture
async def app(apps: AppFactory) -> Harness:
    """One running app with its own topic prefix and cache directory."""
    return await apps.start()
