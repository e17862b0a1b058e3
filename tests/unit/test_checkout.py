"""Checkouts: a local folder is used as it is; leftovers of a stopped daemon are removed,
uploads of queued quick builds are kept. (Fetching is tested end to end.)"""
from __future__ import annotations

import pytest

from basewatch.builder.contexts.checkout import Checkout, Checkouts, dockerfile_in
from basewatch.builder.contexts.spec import ContextError


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


# --- the Dockerfile a task names ----------------------------------------------------------

def test_the_dockerfile_is_found_inside_the_context(tmp_path):
    (tmp_path / "ctx" / "docker").mkdir(parents=True)
    (tmp_path / "ctx" / "docker" / "Dockerfile.prod").write_text("FROM scratch\n")
    (tmp_path / "ctx" / "Linked").symlink_to("docker/Dockerfile.prod")
    real = (tmp_path / "ctx" / "docker" / "Dockerfile.prod").resolve()
    assert dockerfile_in(tmp_path / "ctx", "./docker//Dockerfile.prod") == real
    assert dockerfile_in(tmp_path / "ctx", "Linked") == real


@pytest.mark.parametrize("file, message", [
    ("/etc/passwd", "must be a relative path"),
    ("../outside", "may not contain '..'"),
    ("docker/../../outside", "may not contain '..'"),
    ("Out", "leads outside the build context"),
    ("OutDir/Dockerfile", "leads outside the build context"),
    ("Missing", "no such Dockerfile 'Missing' in the build context"),
    ("docker", "no such Dockerfile 'docker' in the build context"),
    ("", "empty"),
])
def test_a_dockerfile_outside_the_context_is_refused(tmp_path, file, message):
    (tmp_path / "outside").write_text("FROM scratch\n")
    (tmp_path / "ctx" / "docker").mkdir(parents=True)
    (tmp_path / "ctx" / "Out").symlink_to(tmp_path / "outside")
    (tmp_path / "ctx" / "OutDir").symlink_to(tmp_path)
    with pytest.raises(ContextError) as caught:
        dockerfile_in(tmp_path / "ctx", file)
    assert message in str(caught.value)
    assert str(tmp_path) not in str(caught.value), "the daemon's paths are not shown"
