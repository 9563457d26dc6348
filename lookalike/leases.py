"""A lease kept alive by a background thread while its holder works (embedding batches, import jobs)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from django.db import close_old_connections, connection

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def renewing(
    renew: Callable[[], bool], *, every_s: float, what: str, lost_message: str | None = None
) -> Iterator[None]:
    """Call ``renew`` every ``every_s`` seconds in a thread while the body runs (a long model batch or a slow
    download does not let the lease lapse); the thread dies with the process, and so does the lease.

    ``renew`` returns False once the lease is no longer this holder's: the thread stops (logging
    ``lost_message`` when given) and the holder notices at its next guarded write.
    """
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.wait(every_s):
                try:
                    if not renew():
                        if lost_message:
                            logger.warning(lost_message)
                        return
                except Exception:  # the database may be restarting: try again at the next tick
                    logger.exception("Could not renew %s", what)
                    close_old_connections()
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=loop, name=f"renew {what}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
