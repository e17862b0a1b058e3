"""What a context string names: a folder, a git repository or a tarball URL."""
from __future__ import annotations

import pytest

from basewatch.context_spec import (ContextError, ContextSpec, context_dir, context_host,
                                    parse_context, url_has_credentials, without_credentials)


# --- parse_context ------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("app", ContextSpec("local", "app")),
    ("./app", ContextSpec("local", "./app")),
    (".", ContextSpec("local", ".")),
    ("/srv/app", ContextSpec("local", "/srv/app")),
    ("  ../app  ", ContextSpec("local", "../app")),
    ("https://github.com/org/repo.git", ContextSpec("git", "https://github.com/org/repo.git")),
    ("https://github.com/org/repo.git#main",
     ContextSpec("git", "https://github.com/org/repo.git", "main")),
    ("https://github.com/org/repo.git#release/1.2:docker/app",
     ContextSpec("git", "https://github.com/org/repo.git", "release/1.2", "docker/app")),
    ("https://github.com/org/repo.git#:src",
     ContextSpec("git", "https://github.com/org/repo.git", None, "src")),
    ("https://github.com/org/repo.git#main:", ContextSpec("git", "https://github.com/org/repo.git",
                                                          "main")),
    ("https://github.com/org/repo.git#main:./src/", ContextSpec(
        "git", "https://github.com/org/repo.git", "main", "src")),
    ("https://dev.example/org/repo#main:src",  # no .git, but a #fragment says git
     ContextSpec("git", "https://dev.example/org/repo", "main", "src")),
    ("http://127.0.0.1:8080/app.git", ContextSpec("git", "http://127.0.0.1:8080/app.git")),
    ("file:///tmp/r.git#main", ContextSpec("git", "file:///tmp/r.git", "main")),
    ("git@github.com:org/repo.git#v1:src",
     ContextSpec("git", "git@github.com:org/repo.git", "v1", "src")),
    ("git@github.com:org/repo.git", ContextSpec("git", "git@github.com:org/repo.git")),
    ("deploy@git.example:team/repo", ContextSpec("git", "deploy@git.example:team/repo")),
    ("ssh://git@host/org/repo.git", ContextSpec("git", "ssh://git@host/org/repo.git")),
    ("ssh://git@host:2222/org/repo#0123abc", ContextSpec("git", "ssh://git@host:2222/org/repo",
                                                         "0123abc")),
    ("git://host/org/repo.git#main:src", ContextSpec("git", "git://host/org/repo.git", "main",
                                                     "src")),
    ("https://host/ctx.tar.gz", ContextSpec("tarball", "https://host/ctx.tar.gz")),
    ("https://host/ctx.tgz", ContextSpec("tarball", "https://host/ctx.tgz")),
    ("http://host/a/ctx.tar", ContextSpec("tarball", "http://host/a/ctx.tar")),
    ("https://bucket.example/ctx.tar.gz?X-Signature=abc",
     ContextSpec("tarball", "https://bucket.example/ctx.tar.gz?X-Signature=abc")),
])
def test_parse_context_tells_the_kinds_apart(text, expected):
    assert parse_context(text) == expected


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("   ", "empty"),
    ("https://example.com/page", "cannot tell what https://example.com/page is"),
    ("https://example.com/Dockerfile", "tarball URL (https://host/context.tar.gz"),
    ("ftp://host/ctx.tar.gz", "ftp:// build contexts are not supported"),
    ("https://host/repo.git#main:../secrets", "may not contain '..'"),
    ("https://host/repo.git#main:src/../../x", "may not contain '..'"),
    ("git@host:repo.git#main:/etc", "relative path"),
    ("https://host/repo.git#--upload-pack=evil", "not a valid git branch"),
    ("https://host/repo.git#a..b", "not a valid git branch"),
    ("https://host/ctx.tar.gz#main", "takes no #ref:folder"),
    ("file:///tmp/ctx.tar.gz", "must be http(s) URLs"),
])
def test_parse_context_refuses_with_one_clear_message(text, message):
    with pytest.raises(ContextError) as raised:
        parse_context(text)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_messages_do_not_repeat_passwords_or_query_strings():
    with pytest.raises(ContextError) as raised:
        parse_context("https://user:s3cret@host/page?token=t0ken")
    assert "s3cret" not in str(raised.value) and "t0ken" not in str(raised.value)


@pytest.mark.parametrize("text, host", [
    ("https://Git.Example.com:8443/org/app.git#main", "git.example.com"),
    ("ssh://git@git.example.com/org/app.git", "git.example.com"),
    ("git@github.com:org/app.git#v1:svc", "github.com"),
    ("git://git.example.com/app.git", "git.example.com"),
    ("https://user:secret@files.example.com/app.tar.gz", "files.example.com"),
    ("https://[FD00::7]:8443/org/app.git", "fd00::7"),
    ("file:///srv/git/app.git", None),
    ("./app", None),
])
def test_context_host_is_where_a_remote_context_comes_from(text, host):
    assert context_host(parse_context(text)) == host


@pytest.mark.parametrize("text", ["FILE:///srv/app.git#main", "File:///srv/app.git#main"])
def test_a_scheme_is_case_insensitive(text):
    spec = parse_context(text)
    assert (spec.kind, spec.location, spec.ref) == ("git", "file:///srv/app.git", "main")
    assert context_host(spec) is None  # a file:// context, whatever its case


@pytest.mark.parametrize("url, secret, clean", [
    ("https://bot:t0k@h.example/o/r.git#main:x", True, "https://h.example/o/r.git#main:x"),
    ("https://t0k@h.example:8443/r.git", True, "https://h.example:8443/r.git"),
    ("ssh://git:pw@h.example/r.git", True, "ssh://git@h.example/r.git"),
    ("ssh://git@h.example/r.git", False, "ssh://git@h.example/r.git"),
    ("git@h.example:o/r.git", False, "git@h.example:o/r.git"),
    ("https://h.example/c.tgz?sig=1", False, "https://h.example/c.tgz?sig=1"),
    ("/srv/app", False, "/srv/app"),
])
def test_credentials_in_urls_are_found_and_taken_out(url, secret, clean):
    assert url_has_credentials(url) is secret
    assert without_credentials(url) == clean


def test_context_dir_is_the_git_subfolder_or_the_destination(tmp_path):
    assert context_dir(parse_context("git@h:r.git#main:src/app"), tmp_path) == tmp_path / "src/app"
    assert context_dir(parse_context("git@h:r.git#main"), tmp_path) == tmp_path
    assert context_dir(parse_context("https://h/c.tgz"), tmp_path) == tmp_path
    assert context_dir(parse_context("./app"), tmp_path) == tmp_path
