"""``xm vncviewer``: a VNC viewer on a domain's screen.

As xm 3.3 did, it runs ``vncviewer host:display`` (display = port - 5900) and, with
``--autopass``, hands the viewer the domain's VNC password on its standard input
(``-autopass``), so the password is never on a command line.  ``$VNCVIEWER`` names
another viewer program taking the same arguments."""

from __future__ import annotations

import os
import subprocess

from dom0.cli.commands import nargs, parse_args, xend
from dom0.errors import UsageError, XendError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs xm ~2 ms

if TYPE_CHECKING:
    from typing import Any

    from dom0.client import XendClient


def cmd_vncviewer(args: list[str]) -> int:
    opts, rest = parse_args(args, "vncviewer")
    if "help" in opts:
        raise UsageError("")
    nargs("vncviewer", rest, 1)
    autopass = "autopass" in opts or "vncviewer-autopass" in opts
    client = xend()
    info = client.domain_info(dom=rest[0])
    if not info.get("console"):
        raise XendError(f"Domain '{rest[0]}' is not started")
    return run_viewer(client, info, autopass, wait=True)


def run_viewer(client: XendClient, info: dict[str, Any], autopass: bool, wait: bool) -> int:
    """Run the viewer on the domain's VNC server; *wait* for it (``xm vncviewer``) or
    leave it running on its own (``xm create --vncviewer``, ``vncconsole=1``)."""
    if not info.get("vnc"):
        raise XendError(f"Domain '{info['name']}' has no VNC console")
    host, port = str(info["vnc"]).rsplit(":", 1)
    argv = [os.environ.get("VNCVIEWER", "vncviewer")]
    if autopass:
        argv.append("-autopass")
    argv.append(f"{host}:{int(port) - 5900}")
    print("invoking ", " ".join(["vncviewer", *argv[1:]]), flush=True)
    password = vnc_password(client, info) if autopass else None
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if autopass else None,
                                start_new_session=not wait)
    except OSError as exc:
        raise XendError(f"Could not run {argv[0]}: {exc.strerror}") from None
    if password is not None and proc.stdin is not None:
        proc.stdin.write((password + "\n").encode())
        proc.stdin.close()
    return proc.wait() if wait else 0


def vnc_password(client: XendClient, info: dict[str, Any]) -> str:
    """The domain's vfb password, else xend-config's ``vncpasswd`` (Xen read the vfb
    backend's, which xend had filled the same way)."""
    vfbs = (info.get("config") or {}).get("vfbs") or []
    if vfbs and "vncpasswd" in vfbs[0].get("options", {}):
        return str(vfbs[0]["options"]["vncpasswd"])
    rows = dict((str(r[0]), r[1]) for r in client.node_config() if len(r) == 2)
    return str(rows.get("vncpasswd") or "")
