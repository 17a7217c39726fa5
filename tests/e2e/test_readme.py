"""README.md's quickstart, run literally: the `sh` block of its Quickstart section against a
`gpusupply serve` started as `make run ARGS="--port N"` starts it, in a home of its own (no SSH
key yet: the README's ssh-keygen line makes one). Only the port and the printed key are put in."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port

README = Path(__file__).resolve().parents[2] / "README.md"
GPUSUPPLY = str(Path(sys.executable).parent / "gpusupply")
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def quickstart_blocks(text: str) -> list[str]:
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.DOTALL)


def test_the_readme_quickstart_runs_top_to_bottom(tmp_path: Path) -> None:
    (script,) = quickstart_blocks(README.read_text())
    assert "http://127.0.0.1:8080" in script and "KEY=gsk_..." in script
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUSUPPLY_")}
    env.update(HOME=str(home), XDG_DATA_HOME="", XDG_CONFIG_HOME="")
    port = free_port()
    server = subprocess.Popen([GPUSUPPLY, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        banner = []
        for line in server.stdout or []:
            banner.append(line.strip())
            if line.startswith("gsk_"):
                break
        token = banner[-1]
        assert token.startswith("gsk_"), banner
        assert f"gpusupply listening on http://127.0.0.1:{port}" in banner
        filled = script.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{port}").replace("KEY=gsk_...", f"KEY={token}")
        run = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", filled], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, (run.stdout, run.stderr)
    finally:
        server.terminate()
        server.communicate(timeout=30)
    out = run.stdout
    assert (home / ".ssh" / "id_ed25519.pub").exists()  # made by the README's ssh-keygen line
    assert '"H100"' in out.splitlines()[0]
    assert re.search(rf"^offer: {UUID}$", out, re.MULTILINE) and re.search(rf"^resource: {UUID}$", out, re.MULTILINE)
    assert re.search(r"^ssh root@\S+", out, re.MULTILINE), out
    assert re.search(r"status_change running$", out, re.MULTILINE), out
    assert out.splitlines()[-1] == "deleting"
