"""Push matching: which watched references a batch of push notifications names."""
from __future__ import annotations

from basewatch.oci.reference import ImageReference
from basewatch.watcher.notifications import PushNotification
from basewatch.watcher.push_matching import PushMatch, PushMatcher

DIGEST = "sha256:" + "b" * 64


def push(repository: str, tag: str, digest: str | None = DIGEST,
         registry: str | None = "other.example") -> PushNotification:
    return PushNotification("id", "distribution", registry, repository, tag, digest)


def test_a_push_names_a_reference_by_repository_and_tag_whatever_the_host():
    match = PushMatch([push("team/base", "1")])
    assert match.named("127.0.0.1:5000/team/base:1")
    assert match.named("reg.example/team/base:1")
    assert not match.named("127.0.0.1:5000/team/base:2")
    assert not match.named("127.0.0.1:5000/team/other:1")


def test_the_notified_digest_is_the_one_the_push_carried():
    match = PushMatch([push("team/base", "1"), push("team/app", "2", digest=None)])
    assert match.notified("reg.example/team/base:1") == DIGEST
    assert match.notified("reg.example/team/app:2") is None
    assert match.notified("reg.example/team/base:9") is None


class RecordingWatcher:
    def __init__(self, watched: list[str]):
        self.watched = watched
        self.notified: dict[str, str | None] = {}

    async def check_references(self, wanted, notified=None) -> int:
        checked = [base for base in self.watched if wanted(base)]
        self.notified = {base: notified(base) for base in checked}
        return len(checked)


async def test_the_matcher_checks_only_the_named_references():
    watcher = RecordingWatcher(["r.example/team/base:1", "r.example/team/base:2"])
    checked = await PushMatcher(watcher).on_push_notifications([push("team/base", "2")])
    assert checked == 1
    assert watcher.notified == {"r.example/team/base:2": DIGEST}


def test_each_watched_reference_is_parsed_once_across_notifications(monkeypatch):
    parsed, parse = [], ImageReference.parse

    def counted(text: str) -> ImageReference:
        parsed.append(text)
        return parse(text)

    monkeypatch.setattr(ImageReference, "parse", staticmethod(counted))
    watched = [f"reg.example/team/base-once-{n}:1" for n in range(3)]
    for repository in ("team/base-once-1", "team/base-once-2"):
        match = PushMatch([push(repository, "1")])
        assert [base for base in watched if match.named(base)] == \
            [f"reg.example/{repository}:1"]
    assert sorted(parsed) == watched
