"""Checkouts: a local folder is used as it is; leftovers of a stopped daemon are removed,
uploads of queued quick builds are kept; a git checkout fits max_context_bytes. (Fetching
is otherwise tested end to end.)"""
from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from basewatch.builder.contexts.checkout import Checkout, Checkouts, dockerfile_in
from basewatch.context_spec import ContextError


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
# --- max_context_bytes for git checkouts (issue 8, Low) ---------------------------------------

def git_repository(root: Path, files: dict[str, bytes]) -> str:
    """A repository with `files` committed; its file:// URL."""
    root.mkdir(parents=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    for args in (["init", "-q", "-b", "main"], ["add", "."],
                 ["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "c"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)
    return f"file://{root}"


async def test_a_git_checkout_over_max_context_bytes_is_refused_and_removed(tmp_path):
    url = git_repository(tmp_path / "repo", {"Dockerfile": b"FROM scratch\n",
                                             "big.bin": os.urandom(300_000)})
    checkouts = Checkouts(tmp_path / "contexts", max_context_bytes=200_000)
    # Which of the two checks refuses it is a matter of timing: git writes the pack and then
    # the working tree, and a measurement taken while it does may already see twice the limit.
    with pytest.raises(ContextError, match=r"is 304\.5 KiB once checked out, over the limit "
                                           r"of 195\.3 KiB \(max_context_bytes\)|took more than "
                                           r"390\.6 KiB of disk while it was fetched"):
        async with checkouts.for_run(url, "ca1", say=print):
            pytest.fail("a checkout over the limit was used")
    assert not (tmp_path / "contexts" / "run-ca1").exists()


async def test_a_git_checkout_under_max_context_bytes_is_used(tmp_path):
    url = git_repository(tmp_path / "repo", {"Dockerfile": b"FROM scratch\n",
                                             "data.bin": os.urandom(100_000)})
    checkouts = Checkouts(tmp_path / "contexts", max_context_bytes=200_000)
    async with checkouts.for_run(url, "ca1", say=print) as checkout:
        assert (checkout.folder / "data.bin").stat().st_size == 100_000
        assert checkout.revision is not None


async def test_a_git_checkout_with_more_entries_than_the_cap_is_refused(tmp_path, monkeypatch):
    from basewatch.builder.contexts import archive
    monkeypatch.setattr(archive, "MAX_ENTRIES", 5)
    url = git_repository(tmp_path / "repo", {f"f{i}": b"" for i in range(6)})
    checkouts = Checkouts(tmp_path / "contexts", max_context_bytes=10_000_000)
    # The checkout is counted once done; while git writes, twice the cap holds (its own
    # files count then), and a busy machine may measure it there first.
    with pytest.raises(ContextError, match="has more than 5 entries|had more than 10 files "
                                           "and folders while it was fetched"):
        async with checkouts.for_run(url, "ca1", say=print):
            pytest.fail("a checkout over the entry cap was used")


async def test_a_fetch_that_keeps_writing_is_stopped_before_it_fills_the_disk(tmp_path,
                                                                              monkeypatch):
    from basewatch.builder.contexts import checkout as module
    written = []

    async def endless_fetch(spec, destination, **options):
        destination.mkdir(parents=True)
        while True:  # a repository without end, as a hostile git server could send
            (destination / f"f{len(written)}").write_bytes(b"\0" * 100_000)
            written.append(1)
            await asyncio.sleep(0.01)

    monkeypatch.setattr(module, "fetch_git_context", endless_fetch)
    checkouts = Checkouts(tmp_path / "contexts", max_context_bytes=1_000_000)
    with pytest.raises(ContextError, match="took more than 1.9 MiB of disk while it was "
                                           "fetched, twice the limit"):
        async with checkouts.for_run("https://git.example/repo.git", "ca1", say=print):
            pytest.fail("an endless fetch ended")
    assert len(written) < 60  # stopped near twice the limit, not long after
    assert not (tmp_path / "contexts" / "run-ca1").exists()


def test_a_dockerfile_over_the_size_cap_is_refused_unread_and_named_as_the_task_names_it(
        tmp_path):
    from basewatch.builder.contexts.checkout import read_dockerfile
    from basewatch.dockerfile.analysis import MAX_DOCKERFILE_BYTES
    from basewatch.errors import DockerfileError
    (tmp_path / "build").mkdir()
    with open(tmp_path / "build" / "Dockerfile", "wb") as huge:
        huge.truncate(MAX_DOCKERFILE_BYTES + 1)  # sparse: no 8 MiB written
    with pytest.raises(DockerfileError) as caught:
        read_dockerfile(tmp_path, "build/Dockerfile")
    assert str(caught.value) == "build/Dockerfile: larger than 8 MiB, the most a Dockerfile " \
                                "may hold"
