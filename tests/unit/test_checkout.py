"""Checkouts: a local folder is used as it is; leftovers of a stopped daemon are removed,
uploads of queued quick builds are kept. (Fetching is tested end to end.)"""
from __future__ import annotations

from basewatch.builder.contexts.checkout import Checkout, Checkouts


async def test_a_local_folder_is_used_in_place_and_left_alone(tmp_path):
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "Dockerfile").write_text("FROM scratch\n")
    checkouts = Checkouts(tmp_path / "contexts", max_context_bytes=1024)
    async with checkouts.for_run(str(folder), "ca1", say=print) as checkout:
        assert checkout == Checkout(folder, None)
    assert (folder / "Dockerfile").exists()
    assert not (tmp_path / "contexts").exists()


def test_leftover_fetches_go_and_uploads_stay(tmp_path):
    root = tmp_path / "contexts"
    for name in ("run-ca7", "register-0f3a", "upload-9c1e"):
        (root / name / "sub").mkdir(parents=True)
        (root / name / "sub" / "Dockerfile").write_text("FROM scratch\n")
    assert Checkouts(root, max_context_bytes=1024).discard_leftovers() == 2
    assert sorted(p.name for p in root.iterdir()) == ["upload-9c1e"]


def test_no_contexts_folder_yet_means_nothing_to_discard(tmp_path):
    assert Checkouts(tmp_path / "missing", max_context_bytes=1024).discard_leftovers() == 0
