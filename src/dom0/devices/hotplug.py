"""Running the user-replaceable network and vif scripts the way xend did:
``network-bridge start netdev=eth1``, ``vif-bridge online`` with the vif's
details in the environment."""

from __future__ import annotations

import asyncio
import logging
import os

from dom0.errors import DeviceError

log = logging.getLogger(__name__)


def script_path(scripts_dir: str, name: str) -> str:
    return name if os.path.isabs(name) else os.path.join(scripts_dir, name)


async def run(scripts_dir: str, command: str, args: list[str], env: dict[str, str],
              timeout: float = 60.0) -> None:
    """Run a script; a failure raises DeviceError with what the script said."""
    words = command.split()
    path = script_path(scripts_dir, words[0])
    if not os.access(path, os.X_OK):
        raise DeviceError(f"Hotplug script {path} not found or not executable")
    full_env = {**os.environ, **env}
    proc = await asyncio.create_subprocess_exec(
        path, *args, *words[1:], env=full_env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DeviceError(f"{os.path.basename(path)} {' '.join(args)} timed out") from None
    text = out.decode(errors="replace").strip()
    if text:
        log.info("%s %s: %s", os.path.basename(path), " ".join(args), text)
    if proc.returncode != 0:
        raise DeviceError(f"{os.path.basename(path)} {' '.join(args)} failed: "
                          f"{text.splitlines()[-1] if text else proc.returncode}")
