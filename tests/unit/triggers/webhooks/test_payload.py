"""What every provider's parser shares: JSON or a form's payload field, fields by path with a
one-line error naming what is wrong, commit, branch and URL checks."""
from __future__ import annotations

from urllib.parse import urlencode

import pytest

from basewatch.errors import BasewatchError
from basewatch.triggers.webhooks import payload as p
from basewatch.triggers.webhooks.signatures import hmac_sha256, same

SHA = "a" * 40


def test_json_and_form_bodies_give_the_same_object():
    assert p.load({}, b'{"a": 1}') == {"a": 1}
    form = urlencode({"payload": '{"a": 1}'}).encode()
    assert p.load({"Content-Type": "application/x-www-form-urlencoded"}, form) == {"a": 1}
    assert p.load({"content-type": "application/x-www-form-urlencoded; charset=utf-8"},
                  form) == {"a": 1}


@pytest.mark.parametrize("headers, body, message", [
    ({}, b"{not json", "the body is not valid JSON"),
    ({}, b"\xff\xfe", "the body is not valid JSON"),
    ({}, b"[1, 2]", "the body must be a JSON object"),
    ({}, b"[" * 100_000 + b"]" * 100_000, "the body is not valid JSON"),
    ({}, b'{"a": ' + b"9" * 5000 + b"}", "the body is not valid JSON"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, b"other=1",
     "the form body must have one payload field"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, b"payload=1&payload=2",
     "the form body must have one payload field"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, b"payload=%ff",
     "the form body is not a URL-encoded form"),
])
def test_bodies_that_are_no_json_object_are_malformed(headers, body, message):
    with pytest.raises(p.MalformedPayloadError) as raised:
        p.load(headers, body)
    assert str(raised.value) == message


@pytest.mark.parametrize("value, path, message", [
    ({}, "a.b", "a.b: missing"),
    ({"a": None}, "a.b", "a.b: missing"),
    ({"a": 1}, "a.b", "a: expected an object, got a number"),
    ({"a": {"b": 1}}, "a.b", "a.b: expected a string, got a number"),
    ({"a": {"b": []}}, "a.b", "a.b: expected a string, got a list"),
])
def test_a_missing_or_mistyped_field_is_named(value, path, message):
    with pytest.raises(p.MalformedPayloadError, match=f"^{message}$"):
        p.string(value, path)


@pytest.mark.parametrize("commit", [SHA, "0" * 40, "b" * 64])
def test_full_shas_pass(commit):
    assert p.sha({"c": commit}, "c") == commit


@pytest.mark.parametrize("commit", ["abc123", SHA.upper(), SHA + "a", "g" * 40, "-" + SHA[1:]])
def test_anything_but_a_full_sha_is_refused(commit):
    with pytest.raises(p.MalformedPayloadError, match="^c: expected a full commit SHA"):
        p.sha({"c": commit}, "c")


@pytest.mark.parametrize("value", [0, -1, True, 2**31, 1.5, "2"])
def test_numbers_are_positive_whole_numbers(value):
    with pytest.raises(p.MalformedPayloadError, match="positive whole number"):
        p.number({"n": value}, "n")


@pytest.mark.parametrize("name", ["main", "feature/x", "release-1.2", "a@b", "ünï"])
def test_branch_names_git_takes(name):
    assert p.branch_of_ref(f"refs/heads/{name}", "ref") == name


@pytest.mark.parametrize("name", ["-rf", "a..b", "a b", "a\nb", "a:b", "a~1", "x.lock", "a/",
                                  "/a", "a//b", "@", "a@{1}", "a\\b", "x" * 256, "", "a\0b"])
def test_branch_names_that_could_mislead_git_are_refused(name):
    with pytest.raises(p.MalformedPayloadError, match="^ref: not a valid branch name$"):
        p.branch_of_ref(f"refs/heads/{name}", "ref")


def test_refs_that_are_no_branch():
    assert p.branch_of_ref("refs/tags/v1", "ref") is None
    assert p.branch_of_ref("refs/notes/x", "ref") is None


def test_urls_are_collected_once_each_and_checked():
    value = {"r": {"a": "https://h/x.git", "b": "https://h/x.git", "c": "git@h:x.git"}}
    assert p.urls(value, "r.a", "r.b", "r.c", "r.d") == ("https://h/x.git", "git@h:x.git")
    with pytest.raises(p.MalformedPayloadError, match="^r.a: missing"):
        p.urls({"r": {}}, "r.a", "r.b")
    for bad in ("https://h/x\n.git", "https://h/ x", "h" * 3000):
        with pytest.raises(p.MalformedPayloadError, match="^r.a: not a repository URL$"):
            p.urls({"r": {"a": bad}}, "r.a")


def test_delivery_ids_are_kept_only_while_short_and_printable():
    assert p.delivery("72d3162e-cc78-11e3-81ab-4c9367dc0958") == \
        "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert p.delivery("x" * 201) is None
    assert p.delivery("a\nb") is None
    assert p.delivery(None) is None


def test_errors_are_basewatch_errors_and_the_unknown_event_is_its_own():
    assert issubclass(p.MalformedPayloadError, BasewatchError)
    assert not issubclass(p.UnknownEventError, p.MalformedPayloadError)
    error = p.UnknownEventError("github", "issues\n" + "x" * 100)
    assert "\n" not in str(error) and len(str(error)) < 120


def test_githubs_published_signature_test_vector():
    # github/docs, "Validating webhook deliveries"; the fixtures README recomputed it.
    assert hmac_sha256("It's a Secret to Everybody", b"Hello, World!") == \
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_constant_time_equality_takes_any_text():
    assert same("secret", "secret")
    assert not same("secret", "Secret")
    assert not same(None, "secret")
    assert not same("jetón\udcff", "secret")  # non-UTF-8 header bytes, as aiohttp hands them
