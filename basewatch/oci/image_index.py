"""One tag for several platforms: each platform's image is pushed under a tag of its own
(`app:1-linux-arm64`), then an OCI index of them all is pushed under the tag asked for. The
engine's classic builder builds one platform at a time, so the index is put together here,
through the registry API."""
from __future__ import annotations

import json

from basewatch.oci.platforms import Platform
from basewatch.oci.reference import ImageReference
from basewatch.oci.registry import OCI_INDEX, RegistryClient


def platform_tag(image: str, platform: str) -> str:
    """Where one platform's image of a multi-platform tag is pushed."""
    ref = ImageReference.parse(image)
    suffix = str(Platform.parse(platform)).replace("/", "-")
    return str(ImageReference(ref.registry, ref.repository, f"{ref.tag}-{suffix}"[:128], None))


async def push_index(client: RegistryClient, image: str,
                     platform_images: list[tuple[str, str]]) -> str:
    """Push an index of (platform, manifest digest) under `image`; return its digest."""
    ref = ImageReference.parse(image)
    manifests = []
    for platform, digest in platform_images:
        head = await client.head_manifest(
            ImageReference(ref.registry, ref.repository, None, digest))
        parsed = Platform.parse(platform)
        entry = {"mediaType": head.media_type, "digest": head.digest, "size": head.size,
                 "platform": {"os": parsed.os, "architecture": parsed.architecture}}
        if parsed.variant:
            entry["platform"]["variant"] = parsed.variant
        manifests.append(entry)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests},
                      separators=(",", ":")).encode()
    return await client.put_manifest(ref, body, OCI_INDEX)
