"""Platforms written as Docker writes them, normalised so they compare equal to index entries."""
import pytest

from basewatch.oci.platforms import DEFAULT_PLATFORM, Platform


@pytest.mark.parametrize("text, platform", [
    ("linux/amd64", Platform("linux", "amd64")),
    ("linux/x86_64", Platform("linux", "amd64")),
    ("linux/x86-64", Platform("linux", "amd64")),
    ("LINUX/AMD64", Platform("linux", "amd64")),
    (" linux/amd64\n", Platform("linux", "amd64")),
    ("linux/arm64", Platform("linux", "arm64")),
    ("linux/arm64/v8", Platform("linux", "arm64")),
    ("linux/aarch64", Platform("linux", "arm64")),
    ("linux/aarch64/v8", Platform("linux", "arm64")),
    ("linux/arm", Platform("linux", "arm", "v7")),
    ("linux/arm/v7", Platform("linux", "arm", "v7")),
    ("linux/arm/v6", Platform("linux", "arm", "v6")),
    ("linux/armhf", Platform("linux", "arm", "v7")),
    ("linux/ppc64le", Platform("linux", "ppc64le")),
    ("linux/s390x", Platform("linux", "s390x")),
    ("windows/amd64", Platform("windows", "amd64")),  # parsed; config refuses to build it
])
def test_parse_normalises_like_docker(text, platform):
    assert Platform.parse(text) == platform


def test_armel_is_arm_v6():
    assert Platform.parse("linux/armel") == Platform("linux", "arm", "v6")


@pytest.mark.parametrize("text", ["", "linux", "amd64", "linux/", "/amd64", "linux//v7",
                                  "linux/arm/v7/extra"])
def test_parse_refuses_what_is_not_os_arch_variant(text):
    with pytest.raises(ValueError) as caught:
        Platform.parse(text)
    assert str(caught.value) == f"platform {text!r} is not of the form os/arch[/variant]"


@pytest.mark.parametrize("text, written", [
    ("linux/amd64", "linux/amd64"),
    ("linux/x86_64", "linux/amd64"),
    ("linux/arm64/v8", "linux/arm64"),
    ("linux/arm", "linux/arm/v7"),
    ("linux/arm/v6", "linux/arm/v6"),
])
def test_str_is_the_normal_form_and_parses_back(text, written):
    platform = Platform.parse(text)
    assert str(platform) == written
    assert Platform.parse(str(platform)) == platform


@pytest.mark.parametrize("platform, entry, matches", [
    ("linux/amd64", ("linux", "amd64", None), True),
    ("linux/amd64", ("linux", "amd64", ""), True),
    ("linux/amd64", ("linux", "x86_64", None), True),
    ("linux/amd64", ("linux", "arm64", None), False),
    ("linux/amd64", ("windows", "amd64", None), False),
    ("linux/arm64", ("linux", "arm64", "v8"), True),
    ("linux/arm64/v8", ("linux", "arm64", None), True),
    ("linux/arm/v7", ("linux", "arm", "v7"), True),
    ("linux/arm/v7", ("linux", "arm", None), True),  # an index's bare arm entry is v7
    ("linux/arm/v6", ("linux", "arm", None), False),
    ("linux/arm/v6", ("linux", "arm", "v6"), True),
    ("linux/arm/v7", ("linux", "arm", "v6"), False),
])
def test_matches_an_index_entry_after_normalising_both(platform, entry, matches):
    assert Platform.parse(platform).matches(*entry) is matches


def test_matches_raises_for_an_entry_without_architecture():
    # The registry client skips such entries (attestations) before asking.
    with pytest.raises(ValueError):
        Platform.parse("linux/amd64").matches("linux", "", None)


def test_platforms_are_hashable_and_ordered():
    platforms = {Platform.parse("linux/arm64"), Platform.parse("linux/aarch64"),
                 Platform.parse("linux/amd64")}
    assert sorted(platforms) == [Platform("linux", "amd64"), Platform("linux", "arm64")]


def test_default_platform_is_linux_amd64():
    assert str(DEFAULT_PLATFORM) == "linux/amd64"
    assert DEFAULT_PLATFORM == Platform.parse("linux/x86_64")
