"""Property tests for extract_context: any bytes and any tar members give a folder that stays
inside its destination, or a ContextError that leaves nothing; never another exception.
tests/security/test_archives.py runs these under a memory limit too."""
from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from basewatch.builder.contexts.archive import extract_context
from basewatch.context_spec import ContextError

LIMIT = 1 << 20
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Names built from the parts that matter: ".", "..", empty parts (a//b), a leading "/", long
# and deep names, names shared between members, a few non-ASCII ones.
PART = st.sampled_from(["a", "b", "c", ".", "..", "", "Dockerfile", "é", "x" * 300, "n\x00ul",
                        "new\nline", "\udcff"])
NAME = st.builds(lambda lead, parts: lead + "/".join(parts),
                 st.sampled_from(["", "", "", "/", "./"]),
                 st.lists(PART, min_size=1, max_size=6) |
                 st.lists(st.just("d"), min_size=250, max_size=300))
TYPES = [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
         tarfile.FIFOTYPE]


@st.composite
def members(draw) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(draw(NAME))
    info.type = draw(st.sampled_from(TYPES))
    info.mode = draw(st.sampled_from([0o644, 0o755, 0o4777, 0o000, 0o7777]))
    data = b""
    if info.type == tarfile.REGTYPE:
        data = draw(st.binary(max_size=600))
        info.size = len(data)
    elif info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = draw(NAME)
    return info, data


def build_tar(entries, fmt: int, compress: bool) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def extract(data: bytes) -> tuple[Path, Path, bool]:
    """Extract `data` beside a sentinel folder; (root, destination, whether it was accepted)."""
    root = Path(tempfile.mkdtemp(prefix="basewatch-prop-"))
    (root / "outside").mkdir()
    (root / "outside" / "secret").write_text("unchanged")
    destination = root / "run" / "context"
    try:
        extract_context(io.BytesIO(data), destination, LIMIT)
    except ContextError as error:
        assert "\n" not in str(error) and len(str(error)) < 1000
        assert not destination.exists(), "a refused archive leaves nothing"
        return root, destination, False
    return root, destination, True


def assert_contained(root: Path, destination: Path) -> None:
    assert sorted(p.name for p in root.iterdir()) == ["outside", "run"]
    assert [p.name for p in (root / "outside").iterdir()] == ["secret"]
    assert (root / "outside" / "secret").read_text() == "unchanged"
    inside = os.path.realpath(destination)
    for folder, folders, files in os.walk(destination):
        for name in folders + files:
            path = os.path.join(folder, name)
            resolved = os.path.realpath(path)
            assert resolved == inside or resolved.startswith(inside + os.sep), \
                f"{path} leads outside, to {resolved}"
            if not os.path.islink(path):
                mode = os.lstat(path).st_mode
                assert not mode & 0o7022, f"{path} keeps set-id or group/other write bits"


@SETTINGS
@given(st.lists(members(), max_size=12),
       st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]), st.booleans())
def test_any_members_stay_inside_or_are_refused(entries, fmt, compress):
    root, destination, _ = extract(build_tar(entries, fmt, compress))
    try:
        assert_contained(root, destination)
    finally:
        shutil.rmtree(root)


@SETTINGS
@given(st.binary(max_size=4096), st.booleans())
def test_any_bytes_are_a_context_or_a_context_error(data, compress):
    root, destination, _ = extract(gzip.compress(data) if compress else data)
    try:
        assert_contained(root, destination)
    finally:
        shutil.rmtree(root)


@SETTINGS
@given(st.lists(members(), min_size=1, max_size=6), st.data())
def test_damaged_archives_are_a_context_or_a_context_error(entries, data):
    archive = bytearray(build_tar(entries, tarfile.PAX_FORMAT, compress=False))
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(archive) - 1))
        archive[position] = data.draw(st.integers(0, 255))
    root, destination, _ = extract(bytes(archive))
    try:
        assert_contained(root, destination)
    finally:
        shutil.rmtree(root)
