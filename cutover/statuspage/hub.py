"""Between the feed and the viewers: the cutover's state, its rendered views, the recent
log lines, and a wake-up for every waiting server-sent-events stream.

Renders are coalesced: a burst of events makes one new version a moment later
(``RENDER_DELAY_S``), rendered once per view and language however many viewers wait for
it, and a slow viewer simply gets the newest version next (it never queues old ones).
Everything runs on the server's event loop; nothing here blocks.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from cutover.plan.build import Plan
from cutover.statuspage.eta import Eta, run_eta
from cutover.statuspage.log_lines import LogLine
from cutover.statuspage.public_view import public_state
from cutover.statuspage.run_state import CutoverState

RENDER_DELAY_S = 0.1
LOG_LINES_KEPT = 5000
# the forecast moves with the clock too: refresh the views this often without events
TICK_S = 15.0


R = TypeVar("R")


class Signal:
    """A version number and a wake-up for everyone waiting for a newer one."""

    def __init__(self) -> None:
        self.version = 0
        self._event = asyncio.Event()

    def bump(self) -> None:
        self.version += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_newer(self, version: int, timeout_s: float) -> bool:
        """True when a version newer than ``version`` is there (now or within the timeout)."""
        if self.version > version:
            return True
        try:
            await asyncio.wait_for(self._event.wait(), timeout_s)
        except TimeoutError:
            return False
        return self.version > version


class Hub:
    """The state of one cutover and what viewers are sent of it."""

    def __init__(
        self,
        state: CutoverState,
        window: tuple[datetime, datetime] | None = None,
        title: str | None = None,
        replan: Callable[[CutoverState], Plan | None] | None = None,
        on_public: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.state = state
        self.window = window
        self.title = title
        self.replan = replan
        self.on_public = on_public
        self.views = Signal()
        self.logs = Signal()
        self.log_lines: deque[tuple[int, LogLine]] = deque(maxlen=LOG_LINES_KEPT)
        self._log_ids: set[str] = set()
        self._renders: dict[tuple[str, int], Any] = {}
        self._pending: asyncio.TimerHandle | None = None
        self.public: dict[str, Any] = public_state(state, None, window, title)
        self.eta: Eta | None = None
        self.ready = False  # the backfill is in

    # --- input from the feed ------------------------------------------------------

    def apply_events(self, events: list[dict[str, Any]]) -> None:
        changed = False
        for event in events:
            changed = self.state.apply(event) or changed
        if changed:
            self.changed()

    def changed(self) -> None:
        """Something changed: render a new version soon (bursts make one version)."""
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(RENDER_DELAY_S, self.refresh)

    def refresh(self) -> None:
        self._pending = None
        if self.replan is not None:
            plan = self.replan(self.state)
            if plan is not None:
                self.state = self._rebuilt(plan)
        now = datetime.now(UTC)
        self.eta = run_eta(self.state, now, self.window[1] if self.window else None)
        self.public = public_state(self.state, self.eta, self.window, self.title)
        self._renders.clear()
        self.views.bump()
        if self.on_public is not None:
            self.on_public(self.public)

    def _rebuilt(self, plan: Plan) -> CutoverState:
        fresh = CutoverState(self.state.name, plan)
        fresh.apply_all(self.state._events)
        return fresh

    def add_log_lines(self, lines: list[LogLine]) -> None:
        added = False
        for line in lines:
            if line.id in self._log_ids:
                continue
            if len(self._log_ids) > 4 * LOG_LINES_KEPT:
                self._log_ids = {kept.id for _, kept in self.log_lines}
            self._log_ids.add(line.id)
            self.log_lines.append((self.logs.version + 1, line))
            added = True
        if added:
            self.logs.bump()

    # --- output to the viewers ----------------------------------------------------

    def rendered(self, key: str, render: Callable[[], R]) -> R:
        """``render()``'s result for the current version, computed once per ``key``."""
        cache_key = (key, self.views.version)
        if cache_key not in self._renders:
            self._renders[cache_key] = render()
        return self._renders[cache_key]  # type: ignore[no-any-return]  # what render() gave for this key

    def lines_after(self, version: int) -> list[LogLine]:
        return [line for v, line in self.log_lines if v > version]

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self.refresh()
