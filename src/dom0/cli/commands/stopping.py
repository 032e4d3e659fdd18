"""xm shutdown, reboot and dump-core."""

from __future__ import annotations

import os
import time

from dom0.cli.commands import nargs, parse_args, xend
from dom0.client import XendClient
from dom0.errors import InvalidDomain, OptionError, UsageError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs xm ~2 ms

if TYPE_CHECKING:
    from typing import Any


# ---- shutdown / reboot -------------------------------------------------------


def cmd_shutdown(args: list[str]) -> int:
    opts, rest = parse_args(args, "shutdown")
    if "help" in opts:
        raise UsageError("")
    mode = "poweroff"
    if "halt" in opts:
        mode = "halt"
    if "reboot" in opts:
        mode = "reboot"
    return _shutdown(rest, mode, "all" in opts, "wait" in opts, "shutdown")


def cmd_reboot(args: list[str]) -> int:
    opts, rest = parse_args(args, "reboot")
    return _shutdown(rest, "reboot", "all" in opts, "wait" in opts, "reboot")


def _shutdown(rest: list[str], mode: str, all_: bool, wait: bool, command: str) -> int:
    client = xend()
    if all_:
        if rest:
            raise UsageError(f"'xm {command}' takes no domain with -a")
        targets = [d for d in client.domain_list()
                   if d["domid"] not in (None, 0) and d["state"] and "s" not in d["state"]]
    else:
        nargs(command, rest, 1)
        targets = [client.domain_info(dom=rest[0])]
    started = [client.domain_shutdown(dom=str(d["domid"]), mode=mode) for d in targets]
    if not wait:
        return 0
    for info in started:
        _wait_shutdown(client, info, mode)
    print("All domains rebooted" if mode == "reboot" else "All domains terminated")
    return 0


def _wait_shutdown(client: XendClient, info: dict[str, Any], mode: str) -> None:
    name, domid, uuid = info["name"], info["domid"], info["uuid"]
    while True:
        try:
            now = client.domain_info(dom=uuid)
        except InvalidDomain:
            now = None
        if mode == "reboot":
            if now is None or now.get("domid") is None:
                print(f"Domain {name} destroyed for failing to reboot")
                return
            if now["domid"] != domid:
                print(f"Domain {name} rebooted")
                return
        elif now is None or now.get("domid") != domid or now.get("state", "").find("s") >= 0:
            print(f"Domain {name} terminated")
            return
        time.sleep(0.1)



def cmd_dump_core(args: list[str]) -> int:
    opts, rest = parse_args(args, "dump-core")
    crash, reset = "crash" in opts, "reset" in opts
    if crash and reset:
        raise OptionError("You may not specify more than one '-CR' option")
    nargs("dump-core", rest, 1, 2)
    filename = os.path.abspath(rest[1]) if len(rest) > 1 else None
    print(f"Dumping core of domain: {rest[0]} ...")
    xend().domain_dump(dom=rest[0], file=filename,
                         live="live" in opts, crash=crash, reset=reset)
    return 0

