"""An engine's pull or push progress, told compactly in a run's log.

The engine reports every layer's state changes and, about ten times a second per layer, its
bytes so far: hundreds of lines for one large layer on a slow link. The log gets instead one
line when a layer starts moving and one when it is done, a summary of the whole transfer at
most every `SUMMARY_SECONDS` while it lasts ("pushing 3 layers: 45.2/80.0 MiB, 1 done"), and
one line at the end. What is not a layer's progress (the repository, the digest, a retry, an
unknown status) is logged as the engine wrote it; errors never reach here (the engine adapter
logs them verbatim and fails).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Literal

from basewatch.builder.backends.docker.engine import LogSink

SUMMARY_SECONDS = 2.0

_MOVING = {"Downloading", "Pushing"}
_FINISHED = {"Pushed", "Pull complete"}
_THERE_ALREADY = {"Already exists", "Layer already exists"}  # and "Mounted from REPO"
# States on the way that say nothing a person acts on; the start and end lines cover them.
_QUIET = {"Preparing", "Waiting", "Pulling fs layer", "Verifying Checksum", "Download complete",
          "Extracting"}


@dataclass
class _Layer:
    current: int = 0
    total: int | None = None
    done: bool = False


class TransferLog:
    """One pull or push: fed the engine's status chunks in order, then `finish()`ed."""

    def __init__(self, log: LogSink, kind: Literal["pull", "push"],
                 clock: Callable[[], float] = time.monotonic,
                 every: float = SUMMARY_SECONDS):
        self._log, self._kind, self._clock, self._every = log, kind, clock, every
        self._layers: dict[str, _Layer] = {}
        self._there_already = 0
        self._started: float | None = None
        self._summarised: float | None = None

    def chunk(self, chunk: dict) -> None:
        status = chunk.get("status")
        if status is None:
            return
        layer_id = chunk.get("id")
        # A layer's events carry progressDetail ({} when there is none); "Pulling from REPO"
        # has an id too, the tag's, but no progressDetail.
        if not layer_id or "progressDetail" not in chunk:
            self._log(" ".join(p for p in (layer_id, status) if p) + "\n")
            return
        if status in _MOVING:
            self._moving(layer_id, chunk.get("progressDetail") or {})
        elif status in _FINISHED:
            self._finished(layer_id, status)
        elif status in _THERE_ALREADY or status.startswith("Mounted from "):
            self._there_already += 1
            self._log(f"{layer_id}: {status}\n")
        elif status == "Download complete":
            layer = self._layers.get(layer_id)
            if layer is not None and layer.total is not None:
                layer.current = layer.total
        elif status not in _QUIET:
            self._log(f"{layer_id}: {status}\n")  # "Retrying in 5 seconds", and the unknown
        self._maybe_summarise()

    def _moving(self, layer_id: str, detail: dict) -> None:
        layer = self._layers.get(layer_id)
        if layer is None:
            layer = self._layers[layer_id] = _Layer(total=detail.get("total") or None)
            if self._started is None:
                self._started = self._summarised = self._clock()
            size = f" {_amount(layer.total)}" if layer.total else ""
            self._log(f"{layer_id}: {self._kind}ing{size}\n")
        layer.current = max(layer.current, detail.get("current") or 0)
        if detail.get("total"):
            layer.total = detail["total"]

    def _finished(self, layer_id: str, status: str) -> None:
        layer = self._layers.setdefault(layer_id, _Layer())
        layer.done = True
        if layer.total is not None:
            layer.current = layer.total
        self._log(f"{layer_id}: {status}\n")

    def _maybe_summarise(self) -> None:
        if self._summarised is None or all(layer.done for layer in self._layers.values()):
            return
        now = self._clock()
        if now - self._summarised < self._every:
            return
        self._summarised = now
        layers = self._layers.values()
        done = sum(1 for layer in layers if layer.done)
        self._log(f"{self._kind}ing {_count(len(self._layers))}: {self._bytes()}"
                  + (f", {done} done" if done else "") + "\n")

    def finish(self) -> None:
        """The stream ended well: one line for the whole transfer."""
        if not self._layers and not self._there_already:
            return
        parts = []
        if self._layers:
            seconds = self._clock() - self._started if self._started is not None else 0.0
            moved = sum(layer.total or layer.current for layer in self._layers.values())
            parts.append(f"{_count(len(self._layers))}, {_amount(moved)} in {seconds:.1f} s")
        if self._there_already:
            parts.append(f"{_count(self._there_already)} already there")
        self._log(f"{self._kind}ed " + "; ".join(parts) + "\n")

    def _bytes(self) -> str:
        layers = self._layers.values()
        current = sum(layer.current for layer in layers)
        # A small layer may finish without ever reporting its size: it counts as done.
        if any(layer.total is None and not layer.done for layer in layers):
            return _amount(current)
        return _amount(current, sum(layer.total or layer.current for layer in layers))


def _count(layers: int) -> str:
    return f"{layers} layer" + ("" if layers == 1 else "s")


def _amount(done: int, total: int | None = None) -> str:
    """Bytes as `45.2/80.0 MiB`, both in the unit that suits the larger."""
    scale = max(done, total or 0)
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if scale >= size:
            break
    else:
        return f"{done}/{total} bytes" if total is not None else f"{done} bytes"
    if total is None:
        return f"{done / size:.1f} {unit}"
    return f"{done / size:.1f}/{total / size:.1f} {unit}"
