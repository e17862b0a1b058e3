"""Target platforms written the way Docker writes them: os/arch[/variant]."""
from __future__ import annotations

import platform as _host
import re
from dataclasses import dataclass

# Docker accepts these aliases and normalises them (containerd's normalizeArch); so do we, so
# digests match index entries. Values: (architecture, variant implied by the alias).
_ARCH_ALIASES = {"x86_64": ("amd64", None), "x86-64": ("amd64", None),
                 "aarch64": ("arm64", None), "armhf": ("arm", "v7"), "armel": ("arm", "v6"),
                 "i386": ("386", None)}
_DEFAULT_VARIANT = {"arm": "v7"}
_PART = re.compile(r"[a-z0-9][a-z0-9_.-]*")
# Variants that name the baseline of their architecture, written or not.
_BASELINE_VARIANT = {("arm64", "v8"), ("amd64", "v1")}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Platform":
        """Parse `linux/amd64`, `linux/arm/v7`, `linux/arm64`; raise ValueError otherwise."""
        parts = text.strip().lower().split("/")
        # Each part a name: `linux/amd64 linux/arm64` is no architecture `amd64 linux`.
        if len(parts) not in (2, 3) or not all(_PART.fullmatch(p) for p in parts):
            raise ValueError(f"platform {text!r} is not of the form os/arch[/variant]")
        os_name, (arch, implied) = parts[0], _ARCH_ALIASES.get(parts[1], (parts[1], None))
        variant = parts[2] if len(parts) == 3 else implied or _DEFAULT_VARIANT.get(arch)
        if (arch, variant) in _BASELINE_VARIANT:
            variant = None  # linux/arm64/v8 and linux/arm64 name the same platform
        return cls(os_name, arch, variant)

    def matches(self, os_name: str, architecture: str, variant: str | None) -> bool:
        """Whether an index entry's platform fields describe this platform."""
        other = Platform.parse("/".join(p for p in (os_name, architecture, variant) if p))
        return other == self

    def __lt__(self, other: "Platform") -> bool:
        # A missing variant sorts first (linux/arm64 before linux/arm64/v9).
        return ((self.os, self.architecture, self.variant or "")
                < (other.os, other.architecture, other.variant or ""))

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


DEFAULT_PLATFORM = Platform("linux", "amd64")


def native_platform() -> Platform:
    """The platform this machine builds for natively: what BuildKit calls the build platform."""
    try:
        return Platform.parse(f"linux/{_host.machine()}")
    except ValueError:
        return DEFAULT_PLATFORM  # a machine name Docker would not recognise either
