"""The runs' `--set-secret` values, held in the daemon's memory only: never written to the
database, a log or a file. Held from the request that queued the run until the run ends; a
daemon restart loses them, and the run that needed them fails saying so."""
from __future__ import annotations

from collections.abc import Mapping

from basewatch.errors import BasewatchError
from basewatch.models import Run
from basewatch.redaction import KNOWN


class SecretsLost(BasewatchError):
    """A run was queued with secrets this daemon no longer holds."""


class RunSecrets:
    def __init__(self) -> None:
        self._held: dict[str, dict[str, str]] = {}

    def hold(self, run_id: str, secrets: Mapping[str, str]) -> None:
        if secrets:
            self._held[run_id] = dict(secrets)
            KNOWN.hold(*secrets.values())  # nor in the daemon's own log

    def of(self, run: Run) -> dict[str, str]:
        """The run's secrets; SecretsLost when it was queued with some that are gone."""
        held = self._held.get(run.id, {})
        missing = [name for name in run.secret_names if name not in held]
        if missing:
            raise SecretsLost(
                f"this run was queued with --set-secret {', '.join(missing)}, which the daemon "
                "held in memory only and lost when it restarted: queue the run again with them")
        return dict(held)

    def release(self, run_id: str) -> None:
        KNOWN.release(*self._held.pop(run_id, {}).values())

    async def forget(self, run: Run) -> None:
        """The executor's end hook: the run is over, its secrets go."""
        self.release(run.id)

    def __len__(self) -> int:
        return len(self._held)
