"""`gpusupply ssh RESOURCE` (runs ssh with the resource's user, host, port and your key) and
`gpusupply ssh-config` (Host entries for your running resources, in a file ~/.ssh/config includes),
as dstack and SkyPilot users expect."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from gpusupply.cli import output
from gpusupply.cli.commands import (
    PANEL,
    ApiKeyOption,
    ResourceArgument,
    UrlOption,
    connect,
    handled,
    resolve_resource,
)
from gpusupply.cli.config import UsageProblem, config_file, private_key_for, read_ssh_key
from gpusupply.contract.schemas import ResourceSummary

HOST_PREFIX = "gpusupply-"
MARK = "# gpusupply ssh-config:"


@dataclass(frozen=True, slots=True)
class SshTarget:
    user: str
    host: str
    port: int | None


def parse_ssh_command(command: str | None) -> SshTarget | None:
    """The user, host and port of the server's `ssh root@HOST -p PORT`. Pure."""
    if not command:
        return None
    words = shlex.split(command)
    user_host = next((w for w in words[1:] if "@" in w and not w.startswith("-")), None)
    if user_host is None:
        return None
    user, _, host = user_host.partition("@")
    port = int(words[words.index("-p") + 1]) if "-p" in words[:-1] else None
    return SshTarget(user, host, port)


def ssh_argv(target: SshTarget, identity: Path | None, extra: Sequence[str]) -> list[str]:
    argv = ["ssh"]
    if identity is not None:
        argv += ["-i", str(identity)]
    if target.port is not None:
        argv += ["-p", str(target.port)]
    return [*argv, f"{target.user}@{target.host}", *extra]


def default_identity() -> Path | None:
    """The private key of the first public key `procure` would send (None when there is none)."""
    try:
        _, public = read_ssh_key(None)
    except UsageProblem:
        return None
    return private_key_for(public)


def ssh(
    resource_id: ResourceArgument,
    command: Annotated[list[str] | None, typer.Argument(help="A command to run there (after --), instead of a shell.")] = None,
    identity: Annotated[Path | None, typer.Option("--identity", "-i", help="Private key [default: the one next to ~/.ssh/id_ed25519.pub, ...].")] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Open an SSH session on a running resource (runs your ssh with its user, host, port and key)."""
    with connect(url, api_key) as gs:
        resource = gs.get_resource(resolve_resource(gs, resource_id))
    target = parse_ssh_command(resource.access.ssh_command)
    if resource.status != "running" or target is None:
        raise UsageProblem(f"resource {resource.resource_id} is {resource.status}: no SSH address"
                           + ("" if resource.status in ("deleted", "terminated", "failed") else " yet (try `gpusupply wait` first)"))
    program = shutil.which("ssh")
    if program is None:
        raise UsageProblem("no ssh program on PATH; install OpenSSH's client")
    argv = ssh_argv(target, identity.expanduser() if identity else default_identity(), command or [])
    os.execv(program, argv)  # replaces this process: ssh's exit code is the command's


# ----- ssh-config ---------------------------------------------------------------------------------
def host_alias(name: str | None) -> str | None:
    """A resource name usable as an SSH Host alias (letters, digits, . _ -), or None."""
    return name if name and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name) else None


def host_entries(resources: Sequence[ResourceSummary], identity: Path | None) -> tuple[str, list[str]]:
    """(the file's text, the hosts in it) for the running resources with an address. Pure."""
    lines = [f"{MARK} written by `gpusupply ssh-config`; it is rewritten each time, do not edit", ""]
    hosts = []
    for resource in resources:
        target = parse_ssh_command(resource.access.ssh_command)
        if resource.status != "running" or target is None:
            continue
        host = f"{HOST_PREFIX}{str(resource.resource_id)[:8]}"
        alias = host_alias(resource.name)
        hosts.append(host)
        lines.append(f"Host {host}{f' {alias}' if alias else ''}")
        lines.append(f"  HostName {target.host}")
        lines.append(f"  User {target.user}")
        if target.port is not None:
            lines.append(f"  Port {target.port}")
        if identity is not None:
            lines += [f"  IdentityFile {identity}", "  IdentitiesOnly yes"]
        lines += ["  StrictHostKeyChecking accept-new", ""]
    return "\n".join(lines), hosts


def with_include(ssh_config: str, included: Path) -> str:
    """~/.ssh/config with an `Include` of our file at its top (Include inside a Host block would
    only apply to that host), unless it is there already. Pure."""
    line = f"Include {included}"
    if any(existing.split("#")[0].strip() == line for existing in ssh_config.splitlines()):
        return ssh_config
    return f"{line}  {MARK} your running resources\n" + ssh_config


def ssh_config(
    file: Annotated[Path | None, typer.Option("--file", help="Where to write the Host entries [default: ssh_config next to the CLI's config file].")] = None,
    identity: Annotated[Path | None, typer.Option("--identity", "-i", help="Private key for the entries [default: next to ~/.ssh/id_ed25519.pub, ...].")] = None,
    include: Annotated[bool, typer.Option("--include/--no-include", help="Add an Include of the file to ~/.ssh/config.")] = True,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Write Host entries (gpusupply-ID8 and the resource's name) for your running resources, then `ssh gpusupply-ID8`."""
    with connect(url, api_key) as gs:
        running = list(gs.iter_resources(status="running"))
    path = (file or config_file().parent / "ssh_config").expanduser().absolute()
    key = identity.expanduser().absolute() if identity else default_identity()
    text, hosts = host_entries(running, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    out = output.console()
    if include:
        user_config = Path.home() / ".ssh" / "config"
        before = user_config.read_text() if user_config.exists() else ""
        after = with_include(before, path)
        if after != before:
            user_config.parent.mkdir(mode=0o700, exist_ok=True)
            user_config.write_text(after)
            user_config.chmod(0o600)
            out.print(f"added `Include {path}` to {user_config}", soft_wrap=True)
    out.print(f"wrote {len(hosts)} host{'' if len(hosts) == 1 else 's'} to {path}", soft_wrap=True)
    for host in hosts:
        out.print(f"  ssh {host}")


def register(app: typer.Typer) -> None:
    app.command("ssh", rich_help_panel=PANEL)(handled(ssh))
    app.command("ssh-config", rich_help_panel=PANEL)(handled(ssh_config))
