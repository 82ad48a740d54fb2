"""Ctrl-C during sampling, without tracebacks from compiled code or silently short chains.

Raising KeyboardInterrupt inside Numba-compiled code surfaces as a ``SystemError``, so while a
sampler draws, SIGINT only sets a flag that the sampler checks between draws; it then stops
and the caller raises :class:`~bayesgmm.health.SamplingInterrupted` (or keeps the partial
draws, marked, when asked).  Before sampling starts (compilation) SIGINT raises at once.
Signal handlers can be set only from the main thread; elsewhere the guard does nothing and the
draw count alone reveals an interrupted run.
"""

from __future__ import annotations

import signal
import threading

__all__ = ["InterruptGuard"]


class InterruptGuard:
    """Context manager: while active, SIGINT sets :attr:`interrupted` (once :attr:`sampling`
    is True; before that it raises KeyboardInterrupt as usual)."""

    def __init__(self, sampling: bool = False):
        self.interrupted = False
        self.sampling = sampling
        self._previous = None

    def _handler(self, signum, frame):
        self.interrupted = True
        if not self.sampling:
            raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
