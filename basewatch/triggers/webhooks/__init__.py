"""Git servers' webhooks turned into `SourceEvent`s: one module per provider, each pure (no
HTTP), with the same four names: `NAME`, `SIGNS_BODY` (whether checking the delivery needs the
body), `offered(headers)` (it carries a signature or token at all), `verify(headers, body,
secret)` (constant time) and `parse(headers, body) -> list[SourceEvent]`, which raises
`MalformedPayloadError` or `UnknownEventError` (payload.py). The HTTP receivers are in
`http/source_webhooks.py`; matching events to tasks is `triggers/commits.py`'s."""
from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType

from basewatch.triggers.webhooks import azure_devops, gitea, github, gitlab

# The path under /webhooks/ → the module that reads it.
PROVIDERS: Mapping[str, ModuleType] = {
    "github": github, "gitlab": gitlab, "azure-devops": azure_devops, "gitea": gitea}
