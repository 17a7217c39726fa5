"""The e2e process helpers themselves: a server whose chosen port was taken meanwhile starts on
another port, and an answer on the port from someone else's server never counts as ours."""

from __future__ import annotations

import socket
from pathlib import Path

from ..conftest import free_port
from .helpers import SandboxProcess, ServiceProcess, listens_on, service_env


def squat() -> socket.socket:
    """A listening socket of this test process on a port from the test range."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", free_port()))
    sock.listen()
    return sock


def test_a_sandbox_whose_port_was_taken_starts_on_another(tmp_path: Path) -> None:
    with squat() as squatter:
        taken = squatter.getsockname()[1]
        sandbox = SandboxProcess("fal", tmp_path / "fal.log", port=taken)
        try:
            sandbox.start()
            assert sandbox.port != taken and sandbox.state()["vendor"] == "fal"
            assert sandbox.proc is not None and listens_on(sandbox.proc.pid, sandbox.port)
        finally:
            sandbox.stop()


def test_a_service_whose_port_was_taken_starts_on_another(tmp_path: Path) -> None:
    env = service_env(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "data", {})
    with squat() as squatter:
        taken = squatter.getsockname()[1]
        service = ServiceProcess(["serve", "--port", str(taken), "--no-engine"], env, tmp_path / "serve.log", taken)
        try:
            service.start()
            assert service.port != taken and service.args[service.args.index("--port") + 1] == str(service.port)
        finally:
            service.stop()


def test_listens_on_tells_whose_socket_it_is() -> None:
    import os

    with squat() as squatter, socket.socket() as bound_only:
        port = squatter.getsockname()[1]
        bound_only.bind(("127.0.0.1", free_port()))  # bound, not listening
        assert listens_on(os.getpid(), port)
        assert not listens_on(os.getpid(), bound_only.getsockname()[1])
        assert not listens_on(os.getppid(), port)  # the socket is ours, not our parent's
