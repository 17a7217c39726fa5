"""What the HTTP benchmarks share: a real `gpusupply serve` process and `wrk` as the load generator
(a separate process, written in C, so the client is not what is measured)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent / "gpusupply"
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    url: str
    token: str
    pid: int  # the server process, for a profiler to attach to

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)


@contextlib.contextmanager
def serve(*, engine: bool, database_url: str | None = None, **settings: str) -> Iterator[Served]:
    """`gpusupply serve` on a free loopback port with its own data directory and sandbox vendors."""
    data = Path(tempfile.mkdtemp(prefix="gpusupply-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUSUPPLY_")}
    env.update(GPUSUPPLY_DATA_DIR=str(data), GPUSUPPLY_LOG_LEVEL="warning", **settings)
    if database_url:
        env["GPUSUPPLY_DATABASE_URL"] = database_url
    args = [str(BIN), "serve", "--port", str(port)] + ([] if engine else ["--no-engine"])
    log = (data / "serve.log").open("w+")
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"gpusupply serve did not start: {log.read()[-2000:]}")
            time.sleep(0.1)
        log.seek(0)
        token = next(line.strip() for line in log.read().splitlines() if line.startswith("gsk_"))
        yield Served(url, token, proc.pid)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(20)
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(data, ignore_errors=True)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["bash", str(ROOT / "scripts" / "ensure-wrk.sh")], check=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed and could not be installed (scripts/ensure-wrk.sh)")
    return found


@dataclass
class Load:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def wrk(url: str, *, token: str | None = None, method: str = "GET", body: str | None = None,
        content_type: str = "application/json", seconds: float = 8, connections: int = 16,
        paths: Sequence[str] = (), timeout: float = 2) -> Load:
    """Closed-loop load from one wrk thread (the server gets the other core). With `paths`, each
    request goes to one of them at random (on `url`'s server), else to `url`. An answer slower
    than `timeout` seconds counts as an error."""
    lines = [f'wrk.method = "{method}"']
    if paths:
        lines.append("paths = {" + ",".join(f'"{path}"' for path in paths) + "}")
        lines.append("math.randomseed(7)")
        lines.append("request = function() return wrk.format(nil, paths[math.random(#paths)]) end")
    if body is not None:
        lines.append(f"wrk.body = [[{body}]]")
        lines.append(f'wrk.headers["Content-Type"] = "{content_type}"')
    if token:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {token}"')
    lines.append("""
errors = 0
response = function(status, headers, body)
  if status >= 400 then errors = errors + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("non2xx %d\\n", errors))
end""")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines))
    out = subprocess.run(
        [ensure_wrk(), "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"--timeout={timeout:g}s", "--latency",
         "-s", script.name, url],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    ).stdout
    os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = int(re.search(r"non2xx (\d+)", out).group(1))  # type: ignore[union-attr]
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if socket_errors and "timeout 0" not in socket_errors.group(1):
        errors += 1
    return Load(rps, p50, p99, errors)
