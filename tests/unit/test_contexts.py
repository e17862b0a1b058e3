"""Build contexts: git credentials, packing a folder as Docker does, extracting safely."""
from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from basewatch.builder.contexts.archive import extract_context, pack_local_context
from basewatch.builder.contexts.fetch import GitCredential, _credential_env, _split_credential
from basewatch.context_spec import ContextError

MiB = 1 << 20


def test_git_gets_credentials_through_its_environment_for_their_host_only():
    env = _credential_env("https://Git.Example:8443/o/r.git", GitCredential("bot", "t0k"))
    assert env["GIT_CONFIG_KEY_1"] == "credential.https://git.example:8443.helper"
    assert (env["GIT_CONFIG_KEY_0"], env["GIT_CONFIG_VALUE_0"]) == ("credential.helper", "")
    assert (env["BASEWATCH_GIT_USERNAME"], env["BASEWATCH_GIT_PASSWORD"]) == ("bot", "t0k")
    assert "t0k" not in env["GIT_CONFIG_VALUE_1"]
    assert _credential_env("ssh://git@h/r.git", GitCredential("bot", "t0k")) == {}
    assert _credential_env("https://h/r.git", None) == {}
    # A URL stored by an older version keeps working, without its credentials in git's argv.
    assert _split_credential("https://bot:p%40ss@h/r.git") == (
        "https://h/r.git", GitCredential("bot", "p@ss"))
    assert "p@ss" not in repr(GitCredential("bot", "p@ss"))


# --- pack_local_context -------------------------------------------------------------------

def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def packed_names(archive: Path) -> set[str]:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            return {member.name for member in tar.getmembers()}
    finally:
        archive.unlink()


def test_pack_honours_dockerignore_as_docker_does(tmp_path):
    folder = write(tmp_path / "app", {
        "Dockerfile": "FROM scratch\n",
        ".dockerignore": "# what the build does not need\n*.log\nnode_modules\n!keep.log\n"
                         "Dockerfile\n.dockerignore\n",
        "main.py": "print()\n", "debug.log": "x", "keep.log": "x",
        "node_modules/left/index.js": "x", "sub/trace.log": "x",
    })
    names = packed_names(pack_local_context(folder, limit=MiB))
    # The Dockerfile and .dockerignore are sent even when ignored; `*.log` is top-level only.
    assert names == {"Dockerfile", ".dockerignore", "main.py", "keep.log", "sub",
                     "sub/trace.log"}


def test_pack_keeps_a_dockerfile_in_an_ignored_folder(tmp_path):
    folder = write(tmp_path / "app", {"docker/Dockerfile.prod": "FROM scratch\n",
                                      "docker/notes.txt": "x", ".dockerignore": "docker\n",
                                      "main.py": "x"})
    names = packed_names(pack_local_context(folder, "docker/Dockerfile.prod", limit=MiB))
    assert names == {".dockerignore", "docker/Dockerfile.prod", "main.py"}


def test_pack_without_dockerignore_sends_everything(tmp_path):
    folder = write(tmp_path / "app", {"Dockerfile": "FROM scratch\n", "a/b/c.txt": "x"})
    assert packed_names(pack_local_context(folder, limit=MiB)) == {"Dockerfile", "a", "a/b",
                                                                    "a/b/c.txt"}


def test_packed_context_extracts_to_the_same_files(tmp_path):
    folder = write(tmp_path / "app", {"Dockerfile": "FROM scratch\n", "src/main.py": "print(1)\n"})
    os.symlink("src/main.py", folder / "entry.py")
    os.link(folder / "src/main.py", folder / "hard.py")
    archive = pack_local_context(folder, limit=MiB)
    try:
        extract_context(archive, tmp_path / "out", limit=MiB)
    finally:
        archive.unlink()
    out = tmp_path / "out"
    assert (out / "src/main.py").read_text() == "print(1)\n"
    assert os.readlink(out / "entry.py") == "src/main.py"
    assert (out / "hard.py").read_text() == "print(1)\n"


@pytest.mark.parametrize("setup, dockerfile, message", [
    (lambda root: None, "Dockerfile", "does not exist"),
    (lambda root: root.write_text("x"), "Dockerfile", "is not a folder"),
    (lambda root: root.mkdir(), "Dockerfile", "there is no Dockerfile in"),
    (lambda root: root.mkdir(), "build/Dockerfile.ci", "there is no build/Dockerfile.ci in"),
    (lambda root: root.mkdir(), "../Dockerfile", "must be a path inside"),
    (lambda root: root.mkdir(), "/etc/Dockerfile", "must be a path inside"),
])
def test_pack_errors(tmp_path, setup, dockerfile, message):
    root = tmp_path / "app"
    setup(root)
    with pytest.raises(ContextError, match=message):
        pack_local_context(root, dockerfile, limit=MiB)


def test_pack_refuses_more_entries_than_the_daemon_takes(tmp_path, monkeypatch):
    from basewatch.builder.contexts import archive as module
    monkeypatch.setattr(module, "MAX_ENTRIES", 3)
    folder = write(tmp_path / "app", {"Dockerfile": "FROM scratch\n", "a": "", "b": "", "c": ""})
    with pytest.raises(ContextError, match="has 4 entries .* over the daemon's limit of 3"):
        pack_local_context(folder, limit=MiB)


def test_pack_over_the_limit_names_the_size_the_limit_and_dockerignore(tmp_path):
    folder = write(tmp_path / "app", {"Dockerfile": "FROM scratch\n"})
    (folder / "data.bin").write_bytes(b"\0" * (3 * MiB))
    with pytest.raises(ContextError) as raised:
        pack_local_context(folder, limit=2 * MiB)
    message = str(raised.value)
    assert "3.0 MiB" in message and "2.0 MiB" in message and ".dockerignore" in message
    # Ignoring the large file is the way out.
    (folder / ".dockerignore").write_text("*.bin\n")
    assert packed_names(pack_local_context(folder, limit=2 * MiB)) == {"Dockerfile",
                                                                        ".dockerignore"}


# --- extract_context ----------------------------------------------------------------------

def entry(name: str, data: bytes | None = b"x", **attributes) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    for key, value in attributes.items():
        setattr(info, key, value)
    if data is not None and info.isreg():
        info.size = len(data)
    return info, data


def make_tar(path: Path, entries, compress: bool = True) -> Path:
    with tarfile.open(path, "w:gz" if compress else "w") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None and info.isreg() else None)
    return path


@pytest.fixture
def layout(tmp_path):
    """tmp_path/run/context is the destination; tmp_path/outside must never change."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("unchanged")
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes | str]:
    found = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            found[relative] = "-> " + os.readlink(path)
        elif path.is_file():
            found[relative] = path.read_bytes()
        else:
            found[relative] = "dir"
    return found


def test_extracts_a_normal_tar_with_dot_slash_names(layout):
    archive = make_tar(layout / "ctx.tar.gz", [
        entry("./", type=tarfile.DIRTYPE), entry("./Dockerfile", b"FROM scratch\n"),
        entry("./src/app.py", b"print()\n", mode=0o755),
        entry("./src/link.py", None, type=tarfile.SYMTYPE, linkname="app.py"),
        entry("./lib", None, type=tarfile.SYMTYPE, linkname="src"),
        entry("./copy", None, type=tarfile.LNKTYPE, linkname="./Dockerfile"),
    ])
    destination = layout / "run" / "context"
    extract_context(archive, destination, limit=MiB)
    assert snapshot(destination) == {
        "Dockerfile": b"FROM scratch\n", "copy": b"FROM scratch\n", "lib": "-> src", "src": "dir",
        "src/app.py": b"print()\n", "src/link.py": "-> app.py"}
    assert os.access(destination / "src/app.py", os.X_OK)


def test_extracts_a_plain_tar_from_a_stream(layout):
    buffer = io.BytesIO()
    make_tar(layout / "plain.tar", [entry("Dockerfile", b"FROM scratch\n")], compress=False)
    buffer.write((layout / "plain.tar").read_bytes())
    buffer.seek(0)
    extract_context(buffer, layout / "context", limit=MiB)
    assert (layout / "context/Dockerfile").read_bytes() == b"FROM scratch\n"
    assert not buffer.closed  # the caller's stream stays the caller's


@pytest.mark.parametrize("entries, message", [
    ([entry("../evil")], "climbs out with '..'"),
    ([entry("src/../../evil")], "climbs out with '..'"),
    ([entry("OUTSIDE/abs-evil")], "absolute path"),
    ([entry("etc", None, type=tarfile.SYMTYPE, linkname="/etc"),
      entry("etc/basewatch-evil")], "points outside the context"),
    ([entry("out", None, type=tarfile.SYMTYPE, linkname="OUTSIDE"),
      entry("out/evil")], "points outside the context"),
    ([entry("sub/out", None, type=tarfile.SYMTYPE, linkname="../../../outside"),
      entry("sub/out/evil")], "points outside the context"),
    # A chain that is inside by spelling but outside once resolved.
    ([entry("b", None, type=tarfile.SYMTYPE, linkname="."),
      entry("c", None, type=tarfile.SYMTYPE, linkname="b/b/../outside"),
      entry("c/evil")], "unsafe build context"),
    # Even a link that stays inside is never written through.
    ([entry("real/", None, type=tarfile.DIRTYPE), entry("alias", None, type=tarfile.SYMTYPE,
                                                        linkname="real"),
      entry("alias/file")], "written through a symbolic link"),
    ([entry("hard", None, type=tarfile.LNKTYPE, linkname="OUTSIDE/secret"),
      entry("hard", b"overwritten")], "hard link"),
    ([entry("hard", None, type=tarfile.LNKTYPE, linkname="../../outside/secret"),
      entry("hard", b"overwritten")], "hard link"),
    ([entry("null", None, type=tarfile.CHRTYPE, devmajor=1, devminor=3)], "device or a pipe"),
    ([entry("disk", None, type=tarfile.BLKTYPE, devmajor=8, devminor=0)], "device or a pipe"),
    ([entry("fifo", None, type=tarfile.FIFOTYPE)], "device or a pipe"),
])
def test_unsafe_archives_are_refused_and_nothing_is_written(layout, entries, message):
    outside = str(layout / "outside")
    entries = [(_swap(info, outside), data) for info, data in entries]
    archive = make_tar(layout / "ctx.tar.gz", [entry("Dockerfile", b"FROM scratch\n")] + entries)
    before = snapshot(layout)
    with pytest.raises(ContextError, match=message):
        extract_context(archive, layout / "run" / "context", limit=MiB)
    assert not (layout / "run" / "context").exists()
    assert snapshot(layout) == {**before, "run": "dir"}  # `run` was made as the parent
    assert not os.path.exists("/etc/basewatch-evil")


def _swap(info: tarfile.TarInfo, outside: str) -> tarfile.TarInfo:
    """Replace the OUTSIDE placeholder by tmp_path/outside, an absolute path."""
    info.name = info.name.replace("OUTSIDE", outside)
    info.linkname = info.linkname.replace("OUTSIDE", outside)
    return info


def test_an_empty_destination_is_emptied_again_on_error(layout):
    destination = layout / "context"
    destination.mkdir()
    archive = make_tar(layout / "ctx.tar.gz", [entry("Dockerfile"), entry("src/a"),
                                               entry("../evil")])
    with pytest.raises(ContextError):
        extract_context(archive, destination, limit=MiB)
    assert destination.is_dir() and list(destination.iterdir()) == []


def test_a_destination_in_use_is_refused_and_left_alone(layout):
    destination = layout / "context"
    destination.mkdir()
    (destination / "mine").write_text("keep")
    archive = make_tar(layout / "ctx.tar.gz", [entry("Dockerfile")])
    with pytest.raises(ContextError, match="must be a new or empty folder"):
        extract_context(archive, destination, limit=MiB)
    assert (destination / "mine").read_text() == "keep"


def test_a_member_over_the_limit_is_refused_before_it_is_written(layout):
    archive = make_tar(layout / "ctx.tar.gz", [entry("Dockerfile"),
                                               entry("big.bin", b"\0" * (2 * MiB))])
    with pytest.raises(ContextError, match="unpacks to more than the limit of 1.0 MiB"):
        extract_context(archive, layout / "context", limit=MiB)
    assert not (layout / "context").exists()


def test_many_small_members_count_towards_the_limit(layout):
    archive = make_tar(layout / "ctx.tar.gz", [entry(f"f{i}", b"") for i in range(5000)])
    with pytest.raises(ContextError, match="unpacks to more than the limit"):
        extract_context(archive, layout / "context", limit=MiB)
    assert not (layout / "context").exists()


def test_a_gzip_bomb_stops_at_the_limit(layout):
    # 64 MiB of zeros in a member whose header is honest, about 64 KiB once compressed.
    bomb = layout / "bomb.tar.gz"
    with gzip.open(bomb, "wb") as raw:
        header = tarfile.TarInfo("zeros")
        header.size = 64 * MiB
        raw.write(header.tobuf())
        chunk = b"\0" * MiB
        for _ in range(64):
            raw.write(chunk)
    assert bomb.stat().st_size < MiB
    with pytest.raises(ContextError, match="unpacks to more than the limit"):
        extract_context(bomb, layout / "context", limit=4 * MiB)
    assert not (layout / "context").exists()


@pytest.mark.parametrize("content", [
    b"", b"PK\x03\x04 a zip, not a tar", b"\x1f\x8b\x08\x00 broken gzip", os.urandom(4096),
])
def test_not_a_tar(layout, content):
    archive = layout / "ctx.tar.gz"
    archive.write_bytes(content)
    with pytest.raises(ContextError, match="not a readable tar or tar.gz archive"):
        extract_context(archive, layout / "context", limit=MiB)
    assert not (layout / "context").exists()


def test_a_truncated_archive_leaves_nothing(layout):
    archive = make_tar(layout / "ctx.tar.gz", [entry("Dockerfile"),
                                               entry("data", os.urandom(200_000))])
    archive.write_bytes(archive.read_bytes()[:100_000])
    with pytest.raises(ContextError, match="not a readable"):
        extract_context(archive, layout / "context", limit=MiB)
    assert not (layout / "context").exists()


# --- hostile shapes: names, depth, entries, extended headers -------------------------------

def pax_tar(path: Path, entries) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None and info.isreg() else None)
    return path


def test_a_name_longer_than_path_max_is_refused(layout):
    # Issue 8: one PAX name of 40,000 "a/" held 2.4 GB; deeper ones hit RecursionError.
    archive = pax_tar(layout / "ctx.tar.gz", [entry("a/" * 40_000 + "f")])
    assert archive.stat().st_size < 1024
    with pytest.raises(ContextError, match="longer than 4096 bytes"):
        extract_context(archive, layout / "context", limit=MiB)
    assert not (layout / "context").exists()


def test_a_link_target_longer_than_path_max_is_refused(layout):
    archive = pax_tar(layout / "ctx.tar.gz", [entry("l", None, type=tarfile.SYMTYPE,
                                                    linkname="b/" * 3000)])
    with pytest.raises(ContextError, match="longer than 4096 bytes"):
        extract_context(archive, layout / "context", limit=MiB)


def test_a_name_deeper_than_256_folders_is_refused(layout):
    archive = pax_tar(layout / "ctx.tar.gz", [entry("a/" * 300 + "f")])
    with pytest.raises(ContextError, match="more than 256 folders deep"):
        extract_context(archive, layout / "context", limit=MiB)
    assert not (layout / "context").exists()


def test_names_at_the_limits_are_extracted(layout):
    deep = "d/" * 255 + "f"
    long = "/".join(["x" * 250] * 16)[:4000]
    archive = pax_tar(layout / "ctx.tar.gz", [entry(deep, b"deep"), entry(long, b"long")])
    extract_context(archive, layout / "context", limit=MiB)
    assert (layout / "context" / deep).read_bytes() == b"deep"
    assert (layout / "context" / long).read_bytes() == b"long"


def test_more_entries_than_the_cap_are_refused(layout, monkeypatch):
    from basewatch.builder.contexts import archive as module
    monkeypatch.setattr(module, "MAX_ENTRIES", 1000)
    ok = make_tar(layout / "ok.tar.gz", [entry(f"f{i}", b"") for i in range(1000)])
    extract_context(ok, layout / "ok", limit=MiB)
    too_many = make_tar(layout / "ctx.tar.gz", [entry(f"f{i}", b"") for i in range(1001)])
    with pytest.raises(ContextError, match="more than 1,000 entries"):
        extract_context(too_many, layout / "context", limit=MiB)
    assert not (layout / "context").exists()


def test_an_extended_header_over_a_mebibyte_is_refused(layout):
    info = tarfile.TarInfo("Dockerfile")
    info.pax_headers = {"comment": "x" * (2 * MiB)}
    archive = pax_tar(layout / "ctx.tar.gz", [(info, b"")])
    with pytest.raises(ContextError, match="extended header larger than 1.0 MiB"):
        extract_context(archive, layout / "context", limit=8 * MiB)


def test_global_headers_add_up_to_a_mebibyte_at_most(layout):
    buffer = io.BytesIO()
    for index in range(3):
        header = tarfile.TarInfo()
        buffer.write(header._create_pax_generic_header(  # a pax global header ("g")
            {f"k{index}": "v" * (MiB // 2)}, tarfile.XGLTYPE, "utf-8"))
        buffer.write(tarfile.TarInfo(f"f{index}").tobuf(tarfile.USTAR_FORMAT))
    buffer.write(b"\0" * 1024)
    (layout / "ctx.tar").write_bytes(buffer.getvalue())
    with pytest.raises(ContextError, match="extended header"):
        extract_context(layout / "ctx.tar", layout / "context", limit=8 * MiB)


def test_a_chain_of_extended_headers_is_refused_not_a_recursion_error(layout):
    buffer = io.BytesIO()
    for index in range(2000):
        buffer.write(tarfile.TarInfo()._create_pax_generic_header(
            {"comment": str(index)}, tarfile.XHDTYPE, "utf-8"))
    buffer.write(tarfile.TarInfo("f").tobuf(tarfile.USTAR_FORMAT) + b"\0" * 1024)
    (layout / "ctx.tar").write_bytes(buffer.getvalue())
    with pytest.raises(ContextError, match="extended headers in a row"):
        extract_context(layout / "ctx.tar", layout / "context", limit=8 * MiB)


def test_sparse_files_are_refused(layout):
    # A GNU 1.0 sparse map whose second number never ends: tarfile would read the rest of the
    # stream into one growing buffer.
    buffer = io.BytesIO()
    buffer.write(tarfile.TarInfo()._create_pax_generic_header(
        {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "f",
         "GNU.sparse.realsize": "10"}, tarfile.XHDTYPE, "utf-8"))
    member = tarfile.TarInfo("GNUSparseFile.0/f")
    member.size = 4096
    buffer.write(member.tobuf(tarfile.USTAR_FORMAT) + b"1\n" + b"9" * 4094 + b"\0" * 1024)
    (layout / "ctx.tar").write_bytes(buffer.getvalue())
    with pytest.raises(ContextError, match="sparse"):
        extract_context(layout / "ctx.tar", layout / "context", limit=8 * MiB)


def test_a_link_may_climb_only_at_the_start_of_its_target(layout):
    archive = make_tar(layout / "ctx.tar.gz", [
        entry("sub/up", None, type=tarfile.SYMTYPE, linkname="../Dockerfile"),
        entry("Dockerfile", b"FROM scratch\n")])
    extract_context(archive, layout / "ok", limit=MiB)
    assert (layout / "ok/sub/up").read_bytes() == b"FROM scratch\n"
    # "b" made a link after "c" changes where "c" leads: refused whatever the order.
    archive = make_tar(layout / "ctx.tar.gz", [
        entry("c", None, type=tarfile.SYMTYPE, linkname="b/../outside"),
        entry("b", None, type=tarfile.SYMTYPE, linkname=".")])
    with pytest.raises(ContextError, match="climb with '..' only at the start"):
        extract_context(archive, layout / "context", limit=MiB)


@pytest.mark.parametrize("info", [  # non-ASCII: a PAX record, which keeps the NUL
    entry("é\0b", b""),
    entry("link", None, type=tarfile.SYMTYPE, linkname="é\0y"),
    entry("hard", None, type=tarfile.LNKTYPE, linkname="Dockerfile\0é"),
])
def test_a_nul_in_a_name_is_refused_not_a_value_error(layout, info):
    # Found by test_archive_properties: os.symlink and os.lstat raised ValueError (a 500).
    archive = pax_tar(layout / "ctx.tar.gz", [entry("Dockerfile"), info])
    with pytest.raises(ContextError, match="holds a NUL character"):
        extract_context(archive, layout / "context", limit=MiB)
    assert not (layout / "context").exists()


@pytest.mark.parametrize("entries, size, limit, refusal", [
    (6, 0, 1 << 20, "more than 5 entries"),
    (3, 400, 1000, "unpacks to more than the limit"),
])
def test_an_archive_over_a_cap_is_refused_before_anything_is_written(tmp_path, monkeypatch,
                                                                     entries, size, limit,
                                                                     refusal):
    # Issue 8 (Low): 200,000 empty files took 55 s, one file creation each, before the refusal.
    from basewatch.builder.contexts import archive
    monkeypatch.setattr(archive, "MAX_ENTRIES", 5)
    written = []
    real_extract = archive._BoundedTarFile.extract
    monkeypatch.setattr(archive._BoundedTarFile, "extract",
                        lambda self, member, *a, **k: (written.append(member.name),
                                                       real_extract(self, member, *a, **k)))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for index in range(entries):
            info = tarfile.TarInfo(f"f{index}")
            info.size = size
            tar.addfile(info, io.BytesIO(b"x" * size))
    buffer.seek(0)
    with pytest.raises(ContextError, match=refusal):
        extract_context(buffer, tmp_path / "context", limit)
    assert written == [] and not (tmp_path / "context").exists()


def test_an_extraction_error_names_the_member_not_the_daemons_folder(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("app", "app/Dockerfile"):  # a file, then a file inside it
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"FROM"))
    buffer.seek(0)
    with pytest.raises(ContextError) as caught:
        extract_context(buffer, tmp_path / "daemon-state" / "upload-1", 1 << 20)
    assert str(caught.value).startswith("could not extract the build context"), caught.value
    assert str(tmp_path) not in str(caught.value)


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length).encode()) + len(body) != length:
        length += 1
    return str(length).encode() + body


def test_a_pax_header_charset_that_is_not_utf8_is_a_clear_error(tmp_path):
    # tarfile decodes hdrcharset as UTF-8 and raised UnicodeDecodeError: a 500 (hypothesis).
    records = _pax_record(b"hdrcharset", b"\xff\xfe") + _pax_record(b"path", b"x\xff")
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, len(records)
    member = tarfile.TarInfo("Dockerfile")
    archive = (header.tobuf(format=tarfile.USTAR_FORMAT) + records
               + b"\0" * (-len(records) % 512) + member.tobuf(format=tarfile.USTAR_FORMAT)
               + b"\0" * 1024)
    with pytest.raises(ContextError, match="not a readable tar or tar.gz archive"):
        extract_context(io.BytesIO(archive), tmp_path / "context", 1 << 20)
    assert not (tmp_path / "context").exists()
