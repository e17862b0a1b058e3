"""Which watched references a registry's push notifications name, and the digest each was sent.

Matched on repository and tag only: a registry names itself by whatever host its client used,
and a wrong match costs no more than one HEAD.
"""
from __future__ import annotations

import functools

from basewatch.oci.reference import ImageReference
from basewatch.watcher.digest_watch import ReferenceChecker
from basewatch.watcher.notifications import PushNotification


class PushMatch:
    """The references a batch of pushes names (`named`) and the digest pushed there
    (`notified`), as the watcher's `check_references` takes them."""

    def __init__(self, pushes: list[PushNotification]):
        self._pushed = {(push.repository, push.tag): push.digest for push in pushes}

    def named(self, base: str) -> bool:
        return _repository_and_tag(base) in self._pushed

    def notified(self, base: str) -> str | None:
        return self._pushed.get(_repository_and_tag(base))


# Every notification is matched against every watched reference: parsed once, not 10,000
# references (a sixth of a second) on each push.
@functools.lru_cache(maxsize=65536)
def _repository_and_tag(base: str) -> tuple[str, str | None]:
    ref = ImageReference.parse(base)
    return ref.repository, ref.tag


class PushMatcher:
    """Re-checks at once the watched references a batch of push notifications names."""

    def __init__(self, watcher: ReferenceChecker):
        self.watcher = watcher

    async def on_push_notifications(self, pushes: list[PushNotification]) -> int:
        match = PushMatch(pushes)
        return await self.watcher.check_references(match.named, match.notified)
