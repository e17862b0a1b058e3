"""What to enter in a provider's settings for a webhook basewatch cannot register itself (no
token, or a provider it has no API client for): `basewatch task webhook NAME` prints it."""
from __future__ import annotations

# (where the form is, the fields to fill in order) per provider; {url} and {secret} are filled.
_FORMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "github": ("Settings > Webhooks > Add webhook", (
        "Payload URL: {url}", "Content type: application/json", "Secret: {secret}",
        "SSL verification: Enable SSL verification",
        "Which events: Let me select individual events > Pushes, Pull requests",
        "Active: checked")),
    "gitlab": ("Settings > Webhooks > Add new webhook", (
        "URL: {url}", "Secret token: {secret}",
        "Trigger: Push events (All branches), Merge request events",
        "SSL verification: Enable SSL verification")),
    "gitea": ("Settings > Webhooks > Add webhook > Gitea (Forgejo: Forgejo)", (
        "Target URL: {url}", "HTTP method: POST", "POST content type: application/json",
        "Secret: {secret}", "Trigger on: Custom events > Push, Pull request",
        "Branch filter: *", "Active: checked")),
}
_FORMS["forgejo"] = _FORMS["gitea"]


def webhook_instructions(provider: str, url: str, secret: str) -> list[str]:
    """Lines to show a person: where to go in the repository's settings, and what to enter."""
    where, fields = _FORMS[provider]
    return [f"In the repository's {where}:",
            *(f"  {field.format(url=url, secret=secret)}" for field in fields)]
