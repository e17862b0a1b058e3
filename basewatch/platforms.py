"""Target platforms written the way Docker writes them: os/arch[/variant]."""
from __future__ import annotations

from dataclasses import dataclass

# Docker accepts these aliases and normalises them; so do we, so digests match index entries.
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
                 "armel": "arm"}
_DEFAULT_VARIANT = {"arm": "v7"}


@dataclass(frozen=True, order=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Platform":
        """Parse `linux/amd64`, `linux/arm/v7`, `linux/arm64`; raise ValueError otherwise."""
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"platform {text!r} is not of the form os/arch[/variant]")
        os_name, arch = parts[0], _ARCH_ALIASES.get(parts[1], parts[1])
        variant = parts[2] if len(parts) == 3 else _DEFAULT_VARIANT.get(arch)
        if arch == "arm64" and variant == "v8":
            variant = None  # linux/arm64/v8 and linux/arm64 name the same platform
        return cls(os_name, arch, variant)

    def matches(self, os_name: str, architecture: str, variant: str | None) -> bool:
        """Whether an index entry's platform fields describe this platform."""
        other = Platform.parse("/".join(p for p in (os_name, architecture, variant) if p))
        return other == self

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


DEFAULT_PLATFORM = Platform("linux", "amd64")
