"""When a watcher checks a key next (a base reference, a git remote): every interval,
jittered so that keys sharing an interval drift apart, and less often while it fails."""
from __future__ import annotations

import random

# A failing key is checked at most this many times less often than its interval.
MAX_BACKOFF_FACTOR = 8


def backed_off(interval: float, failures: int) -> float:
    """The interval after `failures` failures in a row: doubled each time, up to the cap."""
    return interval * min(2 ** failures, MAX_BACKOFF_FACTOR)


def next_delay(interval: float, failures: int, jitter: float) -> float:
    """Seconds until the next check, within ±`jitter` (a fraction) of the backed-off interval."""
    return backed_off(interval, failures) * random.uniform(1 - jitter, 1 + jitter)


def first_delay(interval: float, jitter: float) -> float:
    """Seconds until a new key's first check: spread over a jitter window, not a burst at
    start-up."""
    return random.uniform(0, interval * jitter)
