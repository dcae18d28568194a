"""Cancelling tasks reliably.

On Python 3.11 a cancellation can be lost when it races with the completion of an inner
``asyncio.wait_for`` (fixed in 3.12; psycopg_pool uses ``wait_for`` while waiting for a
connection). A task that lost its cancellation then waits on, e.g. in ``LISTEN``, forever; so
shutdown code cancels again until the task is done.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


async def cancel_and_wait(
    *tasks: asyncio.Task[object] | asyncio.Future[object],
    retry_interval: float = 0.5,
    timeout: float = 10.0,
) -> None:
    """Cancel the tasks and wait until they are done, cancelling again every
    ``retry_interval`` seconds; gives up (with a warning) after ``timeout`` seconds. Results and
    exceptions of the tasks are not raised (retrieve them from the tasks if they matter)."""
    pending = {t for t in tasks if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending:
        for t in pending:
            t.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning(
                "%d task(s) did not stop after cancellation: %s",
                len(pending),
                sorted(t.get_name() if isinstance(t, asyncio.Task) else "future" for t in pending),
            )
            return
        _, pending = await asyncio.wait(pending, timeout=min(retry_interval, remaining))
    for t in tasks:
        if t.done() and not t.cancelled():
            t.exception()  # mark retrieved: the caller decides whether it matters


async def wait_any(events: tuple[asyncio.Event, ...], timeout: float) -> None:
    """Return when any event is set or after ``timeout`` seconds."""
    if any(e.is_set() for e in events):
        return
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
