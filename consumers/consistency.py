"""Per-namespace consistency state: watermark, warm targets, cache_warmed_through.

The watcher reports observations, the applier reports what it has applied
and stamps cache_warmed_through (CWT), and scans read the result. Everything
here runs on the event loop; the durable copy of CWT lives in the store and
is written in the applier's batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from consumers.cuts import Observation, covers

logger = logging.getLogger(__name__)

# Pending warm targets per namespace. While the applier lags far behind, a
# target arrives every watch interval. Past this many, every second one is
# dropped, so stamps still come along the way at a coarser step.
MAX_TARGETS: Final = 32


@dataclass
class NamespaceState:
    """Consistency state of one namespace in this process."""

    # Latest observation of the topic; None until the first one.
    watermark: Observation | None = None
    # cache_warmed_through: the newest observation the applier has covered.
    warmed: Observation | None = None
    # Observations waiting for the applier to cover them, oldest first.
    targets: list[Observation] = field(default_factory=list)
    # Partition -> next offset the applier will read (what it has applied).
    next_offsets: dict[int, int] = field(default_factory=dict)
    # Set while a background warm is registered and not yet stamped.
    warm_in_flight: Observation | None = None
    # Why the applier refuses the topic (a CreateTime topic), if it does.
    topic_error: str | None = None
    stamped: asyncio.Event = field(default_factory=asyncio.Event)


StampListener = Callable[[str, Observation], None]


class Consistency:
    """Consistency state of every namespace this process serves."""

    def __init__(self) -> None:
        self._states: dict[str, NamespaceState] = {}
        self._stamp_listeners: list[StampListener] = []

    def state(self, namespace: str) -> NamespaceState:
        state = self._states.get(namespace)
        if state is None:
            state = self._states[namespace] = NamespaceState()
        return state

    def namespaces(self) -> list[str]:
        return sorted(self._states)

    def on_stamp(self, listener: StampListener) -> None:
        """Call `listener(namespace, observation)` after each stamp of CWT."""
        self._stamp_listeners.append(listener)

    def restore(
        self, warmed: dict[str, Observation], next_offsets: dict[str, dict[int, int]]
    ) -> None:
        """Load the durable state the store holds, at start-up."""
        for namespace, observation in warmed.items():
            self.state(namespace).warmed = observation
        for namespace, offsets in next_offsets.items():
            self.state(namespace).next_offsets = dict(offsets)

    def observed(self, observation: Observation) -> None:
        """Record a new observation as the watermark and as a warm target."""
        state = self.state(observation.namespace)
        state.watermark = observation
        self.add_target(observation)

    def add_target(self, observation: Observation) -> None:
        """Register an observation the applier should stamp once it covers it."""
        state = self.state(observation.namespace)
        if state.warmed is not None and covers(
            state.warmed.end_offsets, observation.end_offsets
        ):
            return
        if state.targets and state.targets[-1].end_offsets == observation.end_offsets:
            # Same cut as the newest target: keep the fresher timestamp reading.
            state.targets[-1] = observation
            return
        state.targets.append(observation)
        if len(state.targets) > MAX_TARGETS:
            state.targets = state.targets[1::2] + state.targets[-1:]

    def start_warm(self, namespace: str) -> bool:
        """Register the current watermark as a background warm.

        Returns False when one is already in flight or nothing is observed.
        """
        state = self.state(namespace)
        if state.warm_in_flight is not None or state.watermark is None:
            return False
        state.warm_in_flight = state.watermark
        self.add_target(state.watermark)
        logger.info(
            "background warm of %s registered at watermark_ms=%s end_offsets=%s",
            namespace,
            state.watermark.watermark_ms,
            state.watermark.end_offsets,
        )
        return True

    def due_target(self, namespace: str, next_offsets: dict[int, int]) -> Observation | None:
        """Return the newest target that `next_offsets` cover, if any."""
        for target in reversed(self.state(namespace).targets):
            if covers(next_offsets, target.end_offsets):
                return target
        return None

    def applied(self, namespace: str, next_offsets: dict[int, int]) -> None:
        """Record the offsets the applier has committed for a namespace."""
        self.state(namespace).next_offsets = dict(next_offsets)

    def stamp(self, namespace: str, observation: Observation) -> None:
        """Record a committed stamp of cache_warmed_through."""
        state = self.state(namespace)
        state.warmed = observation
        state.targets = [
            target
            for target in state.targets
            if not covers(observation.end_offsets, target.end_offsets)
        ]
        warm = state.warm_in_flight
        if warm is not None and covers(observation.end_offsets, warm.end_offsets):
            state.warm_in_flight = None
        state.stamped.set()
        state.stamped = asyncio.Event()
        logger.debug(
            "stamped cache_warmed_through of %s at watermark_ms=%s end_offsets=%s",
            namespace,
            observation.watermark_ms,
            observation.end_offsets,
        )
        for listener in self._stamp_listeners:
            listener(namespace, observation)

    async def wait_warmed(self, target: Observation, timeout_s: float) -> bool:
        """Wait until CWT covers `target`; return False on timeout."""
        state = self.state(target.namespace)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while state.warmed is None or not covers(
            state.warmed.end_offsets, target.end_offsets
        ):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(state.stamped.wait(), remaining)
            except TimeoutError:
                return False
        return True
