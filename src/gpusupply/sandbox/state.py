"""The in-process sandboxes' state on disk, so a restarted `gpusupply serve` finds its simulated
instances (docs/vendors.md). One directory (`<data_dir>/sandboxes`) holds:

- `lock`: held (fcntl.flock) by the one process that runs sandboxes on this data directory; a
  second one is refused with the first one's pid. Two processes would otherwise each simulate
  their own vendor and act on each other's instances.
- `<vendor>.json`: the instances, the create/delete ledgers, the clock offset and the id spaces
  used so far; written atomically every few seconds while something changed, and at shutdown.

Each process draws a fresh id space (`SandboxConfig.id_base`), so instance ids never repeat
across processes or restarts.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import random
from pathlib import Path
from typing import Any

from gpusupply.sandbox.common import LedgerEntry, SimInstance, VendorSandbox

ID_SPACES = 9_000  # id_base = n * ID_SPACE_SIZE, n in 1..ID_SPACES
ID_SPACE_SIZE = 100_000
_open_stores: dict[Path, SandboxStore] = {}


class SandboxDirectoryBusy(RuntimeError):
    """Another process runs the sandboxes of this data directory."""


class SandboxStore:
    def __init__(self, directory: Path, lock_fd: int) -> None:
        self.directory = directory
        self._lock_fd = lock_fd
        self._saved: dict[str, str] = {}

    # ----- the lock -------------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: Path) -> SandboxStore:
        """The store of `directory`, locked for this process (the same store when opened again here)."""
        directory = directory.expanduser().absolute()
        if directory in _open_stores:
            return _open_stores[directory]
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise SandboxDirectoryBusy(
                f"the sandbox vendors of {directory.parent} are run by another process (pid {holder}); "
                "only one process may simulate them on one data directory: stop that one, or give this one "
                "another GPUSUPPLY_DATA_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        store = _open_stores[directory] = cls(directory, fd)
        return store

    def close(self) -> None:
        _open_stores.pop(self.directory, None)
        os.close(self._lock_fd)  # closing the descriptor releases the lock

    # ----- state ----------------------------------------------------------------------------------
    def path(self, vendor: str) -> Path:
        return self.directory / f"{vendor}.json"

    def new_id_base(self, vendor: str) -> int:
        """An id space no earlier run of this vendor used."""
        used = set(self._read(vendor).get("id_bases", []))
        free = [n for n in range(1, ID_SPACES + 1) if n * ID_SPACE_SIZE not in used]
        return random.SystemRandom().choice(free) * ID_SPACE_SIZE

    def restore(self, sandbox: VendorSandbox) -> int:
        """Load what an earlier run left; returns how many instances came back."""
        state = self._read(sandbox.name)
        sandbox.id_bases = [*state.get("id_bases", []), sandbox.config.id_base]
        sandbox.clock.offset = float(state.get("clock_offset", 0.0))
        for raw in state.get("instances", []):
            instance = SimInstance(**raw)
            sandbox.instances[instance.id] = instance
        sandbox.creates = [LedgerEntry(**e) for e in state.get("creates", [])]
        sandbox.deletes = [LedgerEntry(**e) for e in state.get("deletes", [])]
        sandbox.restore_extra(state.get("extra", {}))
        self._saved[sandbox.name] = self._render(sandbox)
        return len(state.get("instances", []))

    def save(self, sandbox: VendorSandbox) -> bool:
        """Write the state when it changed since the last write (atomically). True if written."""
        text = self._render(sandbox)
        if self._saved.get(sandbox.name) == text:
            return False
        target = self.path(sandbox.name)
        temporary = target.with_suffix(".tmp")
        temporary.write_text(text)
        os.replace(temporary, target)
        self._saved[sandbox.name] = text
        return True

    def _read(self, vendor: str) -> dict[str, Any]:
        try:
            return json.loads(self.path(vendor).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"cannot read the sandbox state {self.path(vendor)}: {exc}") from None

    @staticmethod
    def _render(sandbox: VendorSandbox) -> str:
        state = {
            "vendor": sandbox.name,
            "id_bases": sandbox.id_bases,
            "clock_offset": sandbox.clock.offset,
            "instances": [dataclasses.asdict(i) for i in sandbox.instances.values()],
            "creates": [dataclasses.asdict(e) for e in sandbox.creates],
            "deletes": [dataclasses.asdict(e) for e in sandbox.deletes],
            "extra": sandbox.extra_state(),
        }
        return json.dumps(state, default=str, sort_keys=True)
