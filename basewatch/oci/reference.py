"""Image references normalised the way Docker does (github.com/distribution/reference)."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from basewatch.errors import ImageReferenceError

DOCKER_HUB = "docker.io"
# Both are Docker Hub; keeping them apart would make one base look like two.
_HUB_ALIASES = frozenset({"index.docker.io", "registry-1.docker.io"})
_OFFICIAL_PREFIX = "library/"
_DEFAULT_TAG = "latest"
_MAX_NAME_LENGTH = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"(?P<algorithm>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*)"
                     r":(?P<hex>[0-9a-fA-F]{32,})")
# go-digest only accepts algorithms it can compute, each with a fixed lowercase hex length.
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_IMAGE_ID = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True)
class ImageReference:
    """A fully qualified image reference: registry, repository, tag and/or digest."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> "ImageReference":
        """Normalise `text` like `docker pull` does; raise ImageReferenceError if it is invalid.

        `scratch` is refused, as Docker refuses it: it names an empty base, not an image, so a
        Dockerfile analyser must recognise it before calling this.
        """
        text = text.strip()
        if not text:
            raise ImageReferenceError("image reference is empty")
        if _IMAGE_ID.fullmatch(text):
            raise ImageReferenceError(
                f"invalid image reference {text!r}: a 64-character hex string is an image ID, "
                "not a repository name")
        registry, remainder = _split_registry(text)
        rest, _, digest = remainder.partition("@")
        repository, colon, tag = rest.partition(":")
        if repository.lower() != repository:
            raise _invalid(text, "repository name must be lowercase")
        if not _DOMAIN.fullmatch(registry):
            raise _invalid(text, f"{registry!r} is not a valid registry host")
        if not _PATH.fullmatch(repository):
            raise _invalid(text, f"{repository!r} is not a valid repository name (lowercase "
                                 "letters, digits and single '.', '_' or '-' between them)")
        if len(repository) > _MAX_NAME_LENGTH:
            raise _invalid(text, f"repository name must not be more than {_MAX_NAME_LENGTH} "
                                 "characters")
        if colon:
            _check_tag(tag, text)
        if "@" in remainder:
            _check_digest(digest, text)
        if registry == DOCKER_HUB and repository == _OFFICIAL_PREFIX + "scratch":
            raise _invalid(text, "'scratch' is a reserved name for an empty base, not an image")
        if not colon and not digest:
            tag = _DEFAULT_TAG
        return cls(registry, repository, tag or None, digest or None)

    @property
    def name(self) -> str:
        """Registry and repository, without tag or digest: `docker.io/library/node`."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        return self.name + _suffix(self.tag, self.digest)

    def with_tag(self, tag: str) -> "ImageReference":
        """The same repository at `tag`, without a digest."""
        _check_tag(tag, f"{self.name}:{tag}")
        return replace(self, tag=tag, digest=None)

    @property
    def familiar(self) -> str:
        """The short form Docker prints: `node:15-alpine`, `user/app:1`; other registries as is."""
        if self.registry != DOCKER_HUB:
            return str(self)
        short = self.repository
        official = short.removeprefix(_OFFICIAL_PREFIX)
        if short.startswith(_OFFICIAL_PREFIX) and "/" not in official:
            short = official
        return short + _suffix(self.tag, self.digest)


def _split_registry(text: str) -> tuple[str, str]:
    """Split off the registry the way Docker decides whether a first component is a host."""
    first, slash, rest = text.partition("/")
    if not slash:
        return DOCKER_HUB, _OFFICIAL_PREFIX + text
    if first in _HUB_ALIASES:
        first = DOCKER_HUB
    # An uppercase first component cannot be a repository namespace, so Docker takes it as a host.
    elif not ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        return DOCKER_HUB, text
    if first == DOCKER_HUB and "/" not in rest:
        rest = _OFFICIAL_PREFIX + rest
    return first, rest


def _check_tag(tag: str, text: str) -> None:
    if not TAG.fullmatch(tag):
        shown = repr(tag) if tag else "an empty tag"
        raise _invalid(text, f"{shown} is not a valid tag (up to 128 letters, digits, '_', '.' "
                             "or '-', not starting with '.' or '-')")


def _check_digest(digest: str, text: str) -> None:
    match = _DIGEST.fullmatch(digest)
    if not match:
        raise _invalid(text, f"{digest!r} is not a valid digest (expected sha256:<64 hex digits>)")
    algorithm, hex_part = match["algorithm"], match["hex"]
    length = _DIGEST_HEX_LENGTH.get(algorithm)
    if length is None:
        raise _invalid(text, f"unsupported digest algorithm {algorithm!r} "
                             f"(use one of {', '.join(_DIGEST_HEX_LENGTH)})")
    if len(hex_part) != length or hex_part.lower() != hex_part:
        raise _invalid(text, f"a {algorithm} digest must be {length} lowercase hex digits")


def _suffix(tag: str | None, digest: str | None) -> str:
    return (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _invalid(text: str, reason: str) -> ImageReferenceError:
    return ImageReferenceError(f"invalid image reference {text!r}: {reason}")


def is_repository(text: str) -> bool:
    """Whether `text` is a repository as a registry names it (`library/alpine`, no host)."""
    return len(text) <= _MAX_NAME_LENGTH and _PATH.fullmatch(text) is not None


def is_registry_host(text: str) -> bool:
    """Whether `text` is a registry host as image references write it (`host:port`)."""
    return _DOMAIN.fullmatch(text) is not None
