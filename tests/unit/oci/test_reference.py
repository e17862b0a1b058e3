"""Image reference normalisation, checked against what Docker itself prints."""
import pytest

from basewatch.errors import BasewatchError, ImageReferenceError
from basewatch.oci.reference import ImageReference

SHA = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, registry, repository, tag, digest", [
    ("node", "docker.io", "library/node", "latest", None),
    ("node:15-alpine", "docker.io", "library/node", "15-alpine", None),
    ("library/node", "docker.io", "library/node", "latest", None),
    ("docker.io/node", "docker.io", "library/node", "latest", None),
    ("docker.io/library/node:20", "docker.io", "library/node", "20", None),
    ("index.docker.io/library/node:1", "docker.io", "library/node", "1", None),
    ("index.docker.io/node", "docker.io", "library/node", "latest", None),
    ("registry-1.docker.io/user/app:2", "docker.io", "user/app", "2", None),
    ("user/app", "docker.io", "user/app", "latest", None),
    ("user/team/app:v1.2_3", "docker.io", "user/team/app", "v1.2_3", None),
    ("localhost/app", "localhost", "app", "latest", None),
    ("localhost:5000/a/b:c", "localhost:5000", "a/b", "c", None),
    ("127.0.0.1:5000/apps/hello:latest", "127.0.0.1:5000", "apps/hello", "latest", None),
    ("mcr.microsoft.com/dotnet/aspnet:8.0", "mcr.microsoft.com", "dotnet/aspnet", "8.0", None),
    ("myregistry:5000/app", "myregistry:5000", "app", "latest", None),
    ("[::1]:5000/app:1", "[::1]:5000", "app", "1", None),
    ("quay.io/app", "quay.io", "app", "latest", None),  # no library/ outside Docker Hub
    # Docker takes an uppercase first component as a host, since namespaces are lowercase.
    ("Registry/app", "Registry", "app", "latest", None),
    ("a__b/c--d/e.f_g:1", "docker.io", "a__b/c--d/e.f_g", "1", None),
    (f"ghcr.io/o/r@{SHA}", "ghcr.io", "o/r", None, SHA),
    (f"node@{SHA}", "docker.io", "library/node", None, SHA),
    (f"node:18@{SHA}", "docker.io", "library/node", "18", SHA),
    ("node:" + "x" * 128, "docker.io", "library/node", "x" * 128, None),
    ("  node:18\n", "docker.io", "library/node", "18", None),
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),  # a tag, as in Docker
])
def test_parse_normalises_like_docker(text, registry, repository, tag, digest):
    assert ImageReference.parse(text) == ImageReference(registry, repository, tag, digest)


@pytest.mark.parametrize("text, canonical, familiar", [
    ("node:15-alpine", "docker.io/library/node:15-alpine", "node:15-alpine"),
    ("node", "docker.io/library/node:latest", "node:latest"),
    ("user/app:1", "docker.io/user/app:1", "user/app:1"),
    ("library/a/b:1", "docker.io/library/a/b:1", "library/a/b:1"),
    ("127.0.0.1:5000/apps/hello", "127.0.0.1:5000/apps/hello:latest",
     "127.0.0.1:5000/apps/hello:latest"),
    (f"ghcr.io/o/r@{SHA}", f"ghcr.io/o/r@{SHA}", f"ghcr.io/o/r@{SHA}"),
    (f"node:18@{SHA}", f"docker.io/library/node:18@{SHA}", f"node:18@{SHA}"),
])
def test_canonical_and_familiar_forms(text, canonical, familiar):
    ref = ImageReference.parse(text)
    assert str(ref) == canonical
    assert ref.familiar == familiar
    assert ImageReference.parse(canonical) == ref  # the canonical form reads back unchanged


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("   ", "empty"),
    ("Node", "must be lowercase"),
    ("user/App:1", "must be lowercase"),
    ("docker.io/Library/node", "must be lowercase"),
    ("localhost:5000/Apps/x", "must be lowercase"),
    ("node:", "not a valid tag"),
    ("node:-x", "not a valid tag"),
    ("node:.x", "not a valid tag"),
    ("node:a/b", "'node:a' is not a valid registry host"),  # a ':' marks a host, not a tag
    ("node:" + "x" * 129, "not a valid tag"),
    ("node@sha256:abc", "not a valid digest"),
    ("node@", "not a valid digest"),
    ("node@sha256:" + "a" * 63, "64 lowercase hex"),
    ("node@sha256:" + "A" * 64, "64 lowercase hex"),
    ("node@md5:" + "a" * 32, "unsupported digest algorithm"),
    ("node@sha512:" + "a" * 64, "128 lowercase hex"),
    ("a" * 64, "image ID"),
    ("-node", "not a valid repository name"),
    ("node/", "not a valid repository name"),
    ("a//b", "not a valid repository name"),
    ("node name", "not a valid repository name"),
    ("ex_ample.com/app", "not a valid registry host"),
    ("docker.io/" + "a" * 256, "255 characters"),
    ("scratch", "reserved"),
])
def test_parse_rejects_invalid_references(text, reason):
    with pytest.raises(ImageReferenceError, match=reason) as caught:
        ImageReference.parse(text)
    assert isinstance(caught.value, BasewatchError)
    assert "\n" not in str(caught.value)


def test_name_and_with_tag_drop_the_digest():
    ref = ImageReference.parse(f"127.0.0.1:5000/apps/hello:1@{SHA}")
    assert ref.name == "127.0.0.1:5000/apps/hello"
    assert ref.with_tag("2") == ImageReference("127.0.0.1:5000", "apps/hello", "2", None)
    with pytest.raises(ImageReferenceError, match="not a valid tag"):
        ref.with_tag("bad tag")


def test_equality_and_hash_use_all_fields():
    plain = ImageReference.parse("node:18")
    assert plain == ImageReference.parse("docker.io/library/node:18")
    assert len({plain, ImageReference.parse("index.docker.io/node:18")}) == 1
    assert plain != ImageReference.parse(f"node:18@{SHA}")
    assert plain != ImageReference.parse("node:20")
    with pytest.raises(AttributeError):
        plain.tag = "20"  # frozen: references are safe as dict keys
