"""``xendomains start|stop|status|restart|reload``: the Xen init script (spec §5.2).

Start restores saved domains (``XENDOMAINS_SAVE``) and creates the domains of the
auto directory (``/etc/xen/auto``); stop migrates, saves or shuts down every
domain.  Settings come from a shell-style file (``/etc/sysconfig/xendomains``,
or ``$XENDOMAINS_CONFIG``).  Like the original it drives ``xm``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

DEFAULTS = {
    "XENDOMAINS_SYSRQ": "",
    "XENDOMAINS_USLEEP": "100000",
    "XENDOMAINS_CREATE_USLEEP": "5000000",
    "XENDOMAINS_MIGRATE": "",
    "XENDOMAINS_SAVE": "/var/lib/xen/save",
    "XENDOMAINS_SHUTDOWN": "--halt --wait",
    "XENDOMAINS_SHUTDOWN_ALL": "--all --halt --wait",
    "XENDOMAINS_RESTORE": "true",
    "XENDOMAINS_AUTO": "/etc/xen/auto",
    "XENDOMAINS_AUTO_ONLY": "false",
    "XENDOMAINS_STOP_MAXWAIT": "300",
    # dom0's own: where the lock lives
    "XENDOMAINS_LOCKFILE": "/var/lock/subsys/xendomains",
}
USAGE = "Usage: xendomains {start|stop|restart|reload|status}"
SAVE_MAGIC = b"DOM0SAVE"


def read_settings(path: str) -> dict[str, str]:
    """``NAME=value`` lines of a shell file (quotes and comments as the shell has them)."""
    settings = dict(DEFAULTS)
    for line in Path(path).read_text().splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        for word in words:
            name, eq, value = word.partition("=")
            if eq and re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
                settings[name] = value
    return settings


class Xendomains:
    def __init__(self, settings: dict[str, str]) -> None:
        self.s = settings
        self.xm_path = str(Path(sys.executable).parent / "xm")

    def xm(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.xm_path, *args], capture_output=True, text=True,
                              timeout=timeout)

    def flag(self, name: str) -> bool:
        return self.s.get(name, "").lower() in ("true", "yes", "1")

    # ---- what is there ------------------------------------------------------------

    def running(self) -> list[tuple[str, str]]:
        """(name, domid) of every domain but Domain-0, from ``xm list -l`` (which puts
        ``(name ..)`` and ``(domid ..)`` on lines of their own, as this parsing needs)."""
        out = self.xm("list", "-l").stdout
        doms, name, domid = [], None, None
        for line in out.splitlines() + ["(domain"]:
            line = line.strip()
            if line.startswith("(domain") and not line.startswith("(domid"):
                if name and name != "Domain-0" and domid is not None:
                    doms.append((name, domid))
                name = domid = None
            elif m := re.fullmatch(r"\(name (.*)\)", line):
                name = m.group(1).strip("'")
            elif m := re.fullmatch(r"\(domid (\d+)\)", line):
                domid = m.group(1)
        return doms

    def auto_files(self) -> list[Path]:
        auto = Path(self.s["XENDOMAINS_AUTO"])
        return sorted(p for p in auto.iterdir() if p.is_file()) if auto.is_dir() else []

    def config_name(self, path: Path) -> str | None:
        out = self.xm("create", "--quiet", "--dryrun", "--defconfig", str(path)).stdout
        m = re.search(r"^\s*\(name (.*)\)\s*$", out, re.M)
        return m.group(1).strip("'") if m else None

    def save_files(self) -> list[Path]:
        save = Path(self.s["XENDOMAINS_SAVE"]) if self.s["XENDOMAINS_SAVE"] else None
        if not save or not save.is_dir():
            return []
        out = []
        for p in sorted(save.iterdir()):
            try:
                with open(p, "rb") as f:
                    if f.read(len(SAVE_MAGIC)) == SAVE_MAGIC:
                        out.append(p)
            except OSError:
                continue
        return out

    # ---- the verbs ---------------------------------------------------------------

    def start(self) -> int:
        lock = Path(self.s["XENDOMAINS_LOCKFILE"])
        if lock.exists():
            print("xendomains already running (lockfile exists)")
            return 0
        restored = set()
        if self.flag("XENDOMAINS_RESTORE") and self.save_files():
            print("Restoring Xen domains:", end="")
            for f in self.save_files():
                print(f" {f.name}", end="", flush=True)
                r = self.xm("restore", str(f))
                if r.returncode == 0:
                    f.unlink()
                    restored.add(f.name)
                else:
                    print(f"\nAn error occurred while restoring domain {f}:\n{r.stderr}", end="")
            print(" [done]")
        files = self.auto_files()
        if files:
            print("Starting auto Xen domains:", end="")
            up = {name for name, _ in self.running()}
            for f in files:
                name = self.config_name(f)
                print(f" {name or f.name}", end="", flush=True)
                if f.name in restored or name in restored or name in up:
                    print("(skip)", end="")
                    continue
                r = self.xm("create", "--quiet", "--defconfig", str(f))
                if r.returncode != 0:
                    print(f"(failed: {r.stderr.strip()})", end="")
                    continue
                time.sleep(int(self.s["XENDOMAINS_CREATE_USLEEP"]) / 1e6)
            print(" [done]")
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.touch()
        return 0

    def stop(self) -> int:
        print("Shutting down Xen domains:", end="")
        only = {self.config_name(f) for f in self.auto_files()} \
            if self.flag("XENDOMAINS_AUTO_ONLY") else None
        maxwait = float(self.s["XENDOMAINS_STOP_MAXWAIT"] or 300)
        for name, domid in self.running():
            if only is not None and name not in only:
                continue
            print(f" {name}", end="", flush=True)
            for key in self.s["XENDOMAINS_SYSRQ"].split():
                self.xm("sysrq", domid, key)
                time.sleep(int(self.s["XENDOMAINS_USLEEP"]) / 1e6)
            if self.s["XENDOMAINS_MIGRATE"]:
                print("(migr)", end="", flush=True)
                if self._try("migrate", domid, *self.s["XENDOMAINS_MIGRATE"].split(),
                             maxwait=maxwait):
                    continue
            if self.s["XENDOMAINS_SAVE"]:
                print("(save)", end="", flush=True)
                os.makedirs(self.s["XENDOMAINS_SAVE"], exist_ok=True)
                if self._try("save", domid, os.path.join(self.s["XENDOMAINS_SAVE"], name),
                             maxwait=maxwait):
                    continue
            print("(shut)", end="", flush=True)
            self._try("shutdown", domid, *self.s["XENDOMAINS_SHUTDOWN"].split(), maxwait=maxwait)
        if self.running() and self.s["XENDOMAINS_SHUTDOWN_ALL"] and only is None:
            self._try("shutdown", *self.s["XENDOMAINS_SHUTDOWN_ALL"].split(), maxwait=maxwait)
        print(" [done]")
        Path(self.s["XENDOMAINS_LOCKFILE"]).unlink(missing_ok=True)
        return 0

    def _try(self, *args: str, maxwait: float) -> bool:
        try:
            r = self.xm(*args, timeout=maxwait)
        except subprocess.TimeoutExpired:
            print(f"(timeout after {maxwait:g} s)", end="")
            return False
        if r.returncode != 0:
            print(f"(failed: {r.stderr.strip().splitlines()[0] if r.stderr.strip() else ''})",
                  end="")
        return r.returncode == 0

    def status(self) -> int:
        print("Checking for xendomains:", end="")
        if not Path(self.s["XENDOMAINS_LOCKFILE"]).exists():
            print(" [not running]")
            return 3
        up = {name for name, _ in self.running()}
        missing = []
        for f in self.auto_files():
            name = self.config_name(f)
            if name in up:
                print(f" {name}", end="")
            else:
                missing.append(name or f.name)
        if missing:
            print(f" MISS AUTO: {' '.join(missing)}", end="")
        saved = [f.name for f in self.save_files()]
        if saved:
            print(f" MISS SAVED: {' '.join(saved)}", end="")
        print()
        return 3 if missing else 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else ""
    if command not in ("start", "stop", "status", "restart", "reload"):
        print(USAGE)
        return 1
    path = os.environ.get("XENDOMAINS_CONFIG", "/etc/sysconfig/xendomains")
    if not os.path.exists(path):
        print(f"{path} not existing")
        return 0 if command == "stop" else 6
    x = Xendomains(read_settings(path))
    if command == "start":
        return x.start()
    if command == "stop":
        return x.stop()
    if command == "status":
        return x.status()
    x.stop()
    return x.start()


if __name__ == "__main__":
    sys.exit(main())
