"""The clouds one run talks to: each connected on first use, over the run's seam, with
what the audit trail says about ownership transfers (the trail sits above the
providers, so it is handed to them here rather than imported by them)."""

from __future__ import annotations

import threading
from typing import Any

from .calls import CallSeam
from .config import Config
from .model import ObservedIdentity
from .providers import get_cloud
from .providers.interface import Backends


def connect(name: str, config: Config, seam: CallSeam) -> Backends:
    """Connect cloud ``name`` (imports its SDK); a UserError for an unknown name."""
    from .provenance import transfer_believed

    def transfers(observed: ObservedIdentity, manifest_owner: str) -> bool:
        return transfer_believed(config, observed, manifest_owner)
    return get_cloud(name).connect(config, seam, transfers)


class Clouds:
    """Every cloud of one run, each connected once (threads of one run share them)."""

    def __init__(self, config: Config, seam: CallSeam) -> None:
        self.config = config
        self.seam = seam
        self._connected: dict[str, Backends] = {}
        self._lock = threading.Lock()
        # What a run learns once and its steps share: the targets listed under each
        # organisation, folder and management group (workload_ids.targets).
        self.memo: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Backends:
        with self._lock:
            if name not in self._connected:
                self._connected[name] = connect(name, self.config, self.seam)
            return self._connected[name]

    def connected(self) -> dict[str, Backends]:
        """The clouds connected so far, by name."""
        with self._lock:
            return dict(self._connected)
