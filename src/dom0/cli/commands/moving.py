"""xm save, restore, suspend, resume and migrate (with its progress display)."""

from __future__ import annotations

import os
import sys
import time

from dom0.cli.commands import nargs, parse_args, xend
from dom0.client import XendClient
from dom0.errors import XendError

# ---- save / restore / suspend / resume ----------------------------------------------


def cmd_save(args: list[str]) -> int:
    opts, rest = parse_args(args, "save")
    nargs("save", rest, 2)
    path = os.path.abspath(rest[1])
    if not os.access(os.path.dirname(path), os.W_OK):
        raise XendError(f"xm save: Unable to create file {rest[1]}")
    xend().domain_save(dom=rest[0], file=path,
                          checkpoint="checkpoint" in opts)
    return 0


def cmd_restore(args: list[str]) -> int:
    opts, rest = parse_args(args, "restore")
    nargs("restore", rest, 1)
    path = os.path.abspath(rest[0])
    if not os.access(path, os.R_OK):
        raise XendError(f"xm restore: Unable to read file {rest[0]}")
    xend().domain_restore(file=path, paused="paused" in opts)
    return 0


def cmd_suspend(args: list[str]) -> int:
    nargs("suspend", args, 1)
    xend().domain_suspend(dom=args[0])
    return 0


def cmd_resume(args: list[str]) -> int:
    opts, rest = parse_args(args, "resume")
    nargs("resume", rest, 1)
    xend().domain_resume(dom=rest[0], paused="paused" in opts)
    return 0


# ---- migrate -----------------------------------------------------------------------


def cmd_migrate(args: list[str]) -> int:
    opts, rest = parse_args(args, "migrate")
    nargs("migrate", rest, 2)
    port = opts.get("port")
    client = xend()
    job = client.domain_migrate(dom=rest[0], host=rest[1],
                                port=int(port) if port else None,
                                live="live" in opts,
                                ssl=True if "ssl" in opts else None)
    return _follow_migration(client, job, rest[0], rest[1])


def _follow_migration(client: XendClient, job: str, dom: str, host: str) -> int:
    """Progress: a bar with an ETA on a terminal, a line a second otherwise."""
    tty = sys.stdout.isatty()
    shown_prediction = False
    seen_events = 0
    last_line = 0.0
    while True:
        st = client.domain_migrate_status(job=job)
        if st["prediction"] and not shown_prediction:
            print(st["prediction"])
            shown_prediction = True
        for event in st["events"][seen_events:]:
            print(("\n" if tty else "") + f"not converging: {event}")
        seen_events = len(st["events"])
        if st["done"]:
            if tty:
                print()
            if st["error"]:
                raise XendError(st["error"])
            downtime = st["downtime_ms"]
            stream = st.get("stream_s")
            print(f"Migrated {dom} to {host}: total {st['total_s']:.2f} s, downtime "
                  f"{downtime if downtime is not None else '?'} ms"
                  + (f" (QEMU's stream {stream:.2f} s, {st['transferred'] / 2**20:.0f} MiB)"
                     if stream is not None else ""))
            return 0
        if st["phase"] == "transferring" and st["total"]:
            eta = "--" if st["eta_s"] is None else f"{st['eta_s']:.1f} s"
            sent = min(st["transferred"], st["total"])
            frac = sent / st["total"]
            text = (f"[{'#' * int(frac * 30):<30}] {sent / 2**20:7.1f} MiB sent, "
                    f"{st['remaining'] / 2**20:7.1f} MiB left, ETA {eta}")
            now = time.monotonic()
            if tty:
                print("\r" + text, end="", flush=True)
            elif now - last_line >= 1.0:
                print(text, flush=True)
                last_line = now
        time.sleep(0.2)

