"""Where the client commands get their inputs: the server URL and API key, and the SSH key.

Server and key, first found wins: the `--url` / `--api-key` flags, the environment
(`GPUSUPPLY_URL`, `GPUSUPPLY_API_KEY`), then the config file
`$XDG_CONFIG_HOME/gpusupply/config.toml` (default `~/.config/gpusupply/config.toml`):

    url = "http://127.0.0.1:8080"
    api_key = "gsk_..."

`gpusupply configure` writes that file, readable by its owner only.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gpusupply.client import DEFAULT_URL

CONFIG_KEYS = ("url", "api_key")
# Public keys `procure` looks for when --ssh-key is not given, in this order.
DEFAULT_SSH_KEYS = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")
SSH_KEY_PREFIXES = ("ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-")


class UsageProblem(Exception):
    """The command cannot run as given (exit code 2)."""


class NoMatch(UsageProblem):
    """Nothing matches what the user named (exit code 4, like a 404)."""


class MissingKey(UsageProblem):
    """No API key anywhere (exit code 3, like a refused key)."""


@dataclass(frozen=True, slots=True)
class ClientConfig:
    url: str
    api_key: str | None
    config_file: Path


def config_file(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path(env.get("HOME") or Path.home()) / ".config"
    return root / "gpusupply" / "config.toml"


def read_config_file(path: Path) -> dict[str, str]:
    """The file's settings ({} when there is no file). UsageProblem when it cannot be used."""
    try:
        with path.open("rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageProblem(f"cannot read the config file {path}: {exc}") from None
    unknown = sorted(set(values) - set(CONFIG_KEYS))
    if unknown:
        raise UsageProblem(f"config file {path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(CONFIG_KEYS)}")
    for key, value in values.items():
        if not isinstance(value, str):
            raise UsageProblem(f"config file {path}: {key} must be a string")
    return values


def resolve(url: str | None, api_key: str | None, env: Mapping[str, str] | None = None) -> ClientConfig:
    """Flags (Typer already filled them from the environment), then the config file, then defaults."""
    path = config_file(env)
    stored = read_config_file(path) if not (url and api_key) else {}
    return ClientConfig(
        url=(url or stored.get("url") or DEFAULT_URL).strip(),
        api_key=(api_key or stored.get("api_key") or "").strip() or None,
        config_file=path,
    )


def write_config_file(path: Path, values: Mapping[str, str]) -> None:
    """Write the settings (a JSON string is a valid TOML basic string), owner-only (0600)."""
    lines = [f"{key} = {json.dumps(values[key])}" for key in CONFIG_KEYS if values.get(key)]
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    path.chmod(0o600)  # also when the file existed with wider permissions


def read_ssh_key(value: str | None, home: Path | None = None) -> tuple[str, Path | None]:
    """(the public key line, the file it came from). `value` is a file path or the key itself;
    None means the first of ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub."""
    if value is not None and value.strip().startswith(SSH_KEY_PREFIXES):
        return value.strip(), None
    if value is None:
        ssh_dir = (home or Path.home()) / ".ssh"
        found = next((ssh_dir / name for name in DEFAULT_SSH_KEYS if (ssh_dir / name).is_file()), None)
        if found is None:
            raise UsageProblem("no SSH public key found in ~/.ssh; pass --ssh-key PATH (e.g. ~/.ssh/id_ed25519.pub)")
        path = found
    else:
        path = Path(value).expanduser()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageProblem(f"cannot read the SSH key {path}: {exc.strerror or exc}") from None
    if "PRIVATE KEY" in text:
        raise UsageProblem(f"{path} is a private key; pass the public one ({path}.pub)")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        raise UsageProblem(f"{path} is empty; pass an OpenSSH public key file")
    return lines[0], path


def private_key_for(public_key_file: Path | None) -> Path | None:
    """The private key next to a `.pub` file, when it exists (to suggest `ssh -i`)."""
    if public_key_file is None or public_key_file.suffix != ".pub":
        return None
    private = public_key_file.with_suffix("")
    return private if private.is_file() else None
