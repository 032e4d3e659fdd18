#!/usr/bin/env python3
"""Core benchmark of dom0: create, list and destroy latency of ``xm`` against raw
QEMU (the floor: what any manager must pay) and ``virsh`` (a mature toolstack).

One run does everything (about 3-5 minutes on 2 cores)::

    python bench/bench_core.py            # or: make bench

Every operation is timed from the outside, as a user sees it: time.perf_counter()
around subprocess.run of the command, process start-up included.  Each figure is
"median / min" in milliseconds over a few runs.  Goals are checked and reported as
PASS or MISS; the script never fails because of a MISS.

Everything it starts (a private xend, QEMU processes, libvirt domains, and libvirtd
and virtlogd if they were not already running) is torn down in ``finally``, also
on Ctrl-C.  See bench/README.md for what exactly is compared.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
GUEST = Path(os.environ.get("DOM0_GUEST_DIR", REPO / "build" / "guest"))
QEMU = "qemu-system-x86_64"
VIRSH = ["virsh", "-c", "qemu:///system"]

REPS = 5  # runs per operation
MANY = 50  # domains for the "many" list case
BOOT_MEM = 128  # MiB for guests that boot: this guest kernel does not boot in 64 MiB
SMALL_MEM = 32  # MiB for the paused domains of the "many" case
CMD_TIMEOUT = 120.0
PROMPT_TIMEOUT = 90.0
BUDGET = 500.0  # seconds: stop measuring (and clean up) past this, to stay under 10 min
BOOT_MARK = b"dom0-guest: boot complete"
PROMPT = b"# "

START = time.monotonic()
PROBLEMS: list[str] = []  # dom0 failures, reported verbatim at the end
NOTES: list[str] = []  # anything else worth knowing about this run


class CommandFailed(Exception):
    pass


def log(msg: str) -> None:
    try:
        print(f"[{time.monotonic() - START:6.1f}s] {msg}", flush=True)
    except OSError:  # stdout gone (a closed pipe): keep going, above all keep cleaning up
        pass


def over_budget() -> bool:
    return time.monotonic() - START > BUDGET


def run(argv: list[str], env: dict[str, str] | None = None,
        timeout: float = CMD_TIMEOUT) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run a command; return (seconds, result).  Never raises for a non-zero exit."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        proc = subprocess.CompletedProcess(argv, -1, out, err + f"\n(timed out after {timeout}s)")
    return time.perf_counter() - t0, proc


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    return (f"$ {' '.join(map(str, proc.args))}\n  exit status {proc.returncode}\n"
            f"  stdout: {proc.stdout.strip()!r}\n  stderr: {proc.stderr.strip()!r}")


def pid_alive(pid: int) -> bool:
    """True while *pid* exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def kill_and_wait(pid: int, timeout: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_gone(pid, timeout)


def pids_mentioning(text: str) -> list[int]:
    """Our own leftover processes: those whose command line names our temp dir."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    out.append(int(entry))
        except OSError:
            pass
    return out


def wait_prompt(log_path: str, t0: float, timeout: float = PROMPT_TIMEOUT) -> float | None:
    """Seconds from t0 until the guest's shell prompt is in its console log."""
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        try:
            with open(log_path, "rb") as f:
                data = f.read()
        except OSError:
            data = b""
        at = data.find(BOOT_MARK)
        if at >= 0 and PROMPT in data[at:]:
            return time.perf_counter() - t0
        time.sleep(0.01)
    return None


def private_xend_config(where: Path, extra: str = "") -> str:
    """xend-config.sxp of a private xend whose every file is under *where* (its
    socket ``where/xend.sock``), on TCG, with *extra* options after."""
    return "".join(f"({k} {where}/{v})\n" for k, v in (
        ("logfile", "xend.log"), ("xend-api-socket", "xend.sock"),
        ("xend-pid-file", "xend.pid"), ("xend-run-path", "run"),
        ("xend-log-path", "log"), ("xend-state-path", "state"),
        ("xend-domains-path", "domains"), ("xend-dump-path", "dump"))) + \
        "(qemu-accel tcg)\n" + extra


# ---- the three ways of running a domain --------------------------------------------


class Dom0:
    """A private xend instance, driven by the xm command."""

    label = "dom0"

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "x"
        self.dir.mkdir()
        self.config = self.dir / "xend.sxp"
        self.config.write_text(private_xend_config(self.dir))
        self.domcfg = self.dir / "b.cfg"
        self.domcfg.write_text(f'kernel = "{GUEST}/vmlinuz"\nramdisk = "{GUEST}/initrd.img"\n'
                               f'memory = {BOOT_MEM}\nname = "b1"\nextra = "quiet"\n')
        self.env = dict(os.environ, XEND_CONFIG=str(self.config),
                        XM_SERVER=str(self.dir / "xend.sock"))
        self.live: set[str] = set()
        self.started = False
        self.logs_before: set[str] = set()
        self.pending_check: dict[str, str] = {}

    def _check(self, proc: subprocess.CompletedProcess[str]) -> None:
        if proc.returncode != 0:
            PROBLEMS.append(describe(proc))
            raise CommandFailed(describe(proc))

    def start(self) -> float:
        secs, proc = run([str(BIN / "xend"), "start"], env=self.env)
        self.started = True  # a failed start may still have left a daemon: always stop
        self._check(proc)
        return secs

    def xm(self, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
        return run([str(BIN / "xm"), *args], env=self.env)

    def create(self, name: str, mem: int, paused: bool = False) -> float:
        self.logs_before = self._console_logs()
        args = ["create", str(self.domcfg), f"name={name}", f"memory={mem}"]
        secs, proc = self.xm(*args, *(["-p"] if paused else []))
        self._check(proc)
        self.live.add(name)
        if f"Started domain {name}" not in proc.stdout:
            PROBLEMS.append("unexpected output of xm create:\n" + describe(proc))
        return secs

    def _console_logs(self) -> set[str]:
        try:
            return {str(p) for p in (self.dir / "log" / "console").iterdir()}
        except OSError:
            return set()

    def console_log(self, name: str) -> str:
        """The log the new domain's console writes to: the file that appeared in
        xend's console log directory (so that no xm process competes with the
        booting guest for a CPU); ``xm list -l`` is checked against it afterwards."""
        new = self._console_logs() - self.logs_before
        if len(new) == 1:
            self.pending_check[name] = new.pop()
            return self.pending_check[name]
        return self.xm_console_log(name)

    def xm_console_log(self, name: str) -> str:
        _, proc = self.xm("list", "-l", name)
        self._check(proc)
        m = re.search(r"\(log '?([^)']+)'?\)", proc.stdout)
        if not m:
            PROBLEMS.append("no (log ...) in xm list -l:\n" + describe(proc))
            raise CommandFailed("no console log")
        return m.group(1)

    def check_console_log(self, name: str) -> None:
        expected = self.pending_check.pop(name, None)
        if expected is None:
            return
        try:
            shown = self.xm_console_log(name)
        except CommandFailed:
            return
        if shown != expected:
            PROBLEMS.append(f"xm list -l {name} shows console log {shown}, but the domain's "
                            f"console is written to {expected}")

    def list(self, expect: int) -> float:
        secs, proc = self.xm("list")
        self._check(proc)
        rows = [ln for ln in proc.stdout.splitlines()[1:] if ln.strip()]
        guests = [r for r in rows if not r.startswith("Domain-0 ")]
        if len(guests) != expect:
            PROBLEMS.append(f"xm list shows {len(guests)} guest rows, expected {expect}:\n"
                            + describe(proc))
        return secs

    def destroy(self, name: str) -> float:
        secs, proc = self.xm("destroy", name)
        self._check(proc)
        self.live.discard(name)
        return secs

    def cleanup(self) -> None:
        # every domain of this private xend is ours, also one whose `xm create` was
        # interrupted (xend finishes creating it)
        if self.started:
            _, proc = self.xm("list")
            names = {ln.split()[0] for ln in proc.stdout.splitlines()[1:] if ln.strip()}
            self.live |= names - {"Domain-0"}
        for name in sorted(self.live):
            _, proc = self.xm("destroy", name)
            if proc.returncode != 0:
                NOTES.append("cleanup: " + describe(proc))
        self.live.clear()
        if self.started:
            _, proc = run([str(BIN / "xend"), "stop"], env=self.env)
            if proc.returncode != 0:
                PROBLEMS.append("xend stop failed:\n" + describe(proc))
            pid = _daemon_pid(str(self.dir / "xend.pid"), "xend")
            if pid:
                PROBLEMS.append(f"xend (pid {pid}) still running after xend stop; killed")
                kill_and_wait(pid)
            self.started = False
        leftovers = pids_mentioning(str(self.dir) + "/")
        if leftovers:
            PROBLEMS.append(f"processes left behind by xend (killed by the benchmark): "
                            f"{leftovers}")
            for pid in leftovers:
                kill_and_wait(pid)


QMP_LIST = r"""
import json, socket, sys
def status(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    f = s.makefile("rwb")
    f.readline()
    for cmd in ("qmp_capabilities", "query-status"):
        f.write(json.dumps({"execute": cmd}).encode() + b"\n")
        f.flush()
        while True:
            r = json.loads(f.readline())
            if "return" in r or "error" in r:
                break
    s.close()
    return r["return"]["status"]
for p in sys.argv[1:]:
    print(p, status(p))
"""


class Raw:
    """Bare QEMU processes: the least any manager must do."""

    label = "raw QEMU"

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "r"
        self.dir.mkdir()
        self.pids: dict[str, int] = {}

    def paths(self, name: str) -> dict[str, str]:
        return {k: str(self.dir / f"{name}.{k}") for k in ("con", "log", "qmp", "pid")}

    def create(self, name: str, mem: int, paused: bool = False) -> float:
        p = self.paths(name)
        argv = [QEMU, "-machine", "pc", "-accel", "tcg", "-m", str(mem), "-nodefaults",
                "-no-user-config", "-display", "none",
                "-kernel", f"{GUEST}/vmlinuz", "-initrd", f"{GUEST}/initrd.img",
                "-append", "console=ttyS0 quiet",
                "-chardev", f"socket,id=c,path={p['con']},server=on,wait=off,logfile={p['log']}",
                "-serial", "chardev:c", "-qmp", f"unix:{p['qmp']},server=on,wait=off",
                "-daemonize", "-pidfile", p["pid"], *(["-S"] if paused else [])]
        secs, proc = run(argv)
        if proc.returncode != 0:
            raise CommandFailed(describe(proc))
        self.pids[name] = int(Path(p["pid"]).read_text().strip())
        return secs

    def console_log(self, name: str) -> str:
        return self.paths(name)["log"]

    def list(self, expect: int) -> float:
        socks = [self.paths(n)["qmp"] for n in sorted(self.pids)]
        secs, proc = run([sys.executable, "-I", "-S", "-c", QMP_LIST, *socks])
        if proc.returncode != 0 or len(proc.stdout.splitlines()) != expect:
            raise CommandFailed(describe(proc))
        return secs

    def destroy(self, name: str) -> float:
        """SIGKILL and wait until the pid is gone (in-process: no command start-up)."""
        pid = self.pids.pop(name)
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid, 10.0)
        return time.perf_counter() - t0

    def cleanup(self) -> None:
        for name in list(self.pids):
            kill_and_wait(self.pids.pop(name))
        for pid in pids_mentioning(str(self.dir) + "/"):
            kill_and_wait(pid)


def _qemu_user() -> str:
    try:
        text = Path("/etc/libvirt/qemu.conf").read_text()
    except OSError:
        return "libvirt-qemu"
    m = re.search(r'^\s*user\s*=\s*"([^"]+)"', text, re.M)
    return m.group(1) if m else "libvirt-qemu"


def _kvm_accessible_to(user: str) -> bool:
    try:
        st = os.stat("/dev/kvm")
        pw = pwd.getpwnam(user)
    except (OSError, KeyError):
        return True  # no /dev/kvm (or no such user): nothing to work around
    if user == "root" or st.st_mode & 0o006 == 0o006:
        return True
    if st.st_uid == pw.pw_uid and st.st_mode & 0o600 == 0o600:
        return True
    groups = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    return st.st_gid in groups and st.st_mode & 0o060 == 0o060


def _daemon_pid(pidfile: str, name: str) -> int | None:
    """The live pid in *pidfile* if its command line names *name*."""
    try:
        pid = int(Path(pidfile).read_text().strip())
        if name.encode() in Path(f"/proc/{pid}/cmdline").read_bytes() and pid_alive(pid):
            return pid
    except (OSError, ValueError):
        pass
    return None


class Libvirt:
    """Makes sure libvirtd answers on qemu:///system; stops it at the end only if we
    started it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ours: list[tuple[str, int]] = []
        self.available = False

    def _answers(self) -> bool:
        _, proc = run([*VIRSH, "list"], timeout=30)
        return proc.returncode == 0

    def ensure(self) -> bool:
        if not shutil.which("virsh"):
            print("libvirt is not installed (no virsh): the virsh columns are skipped")
            return False
        if self._answers():
            NOTES.append("libvirtd was already running; it was used as it is")
            self.available = True
            return True
        if not shutil.which("libvirtd"):
            print("virsh cannot connect and there is no libvirtd: the virsh columns are skipped")
            return False
        if _daemon_pid("/run/virtlogd.pid", "virtlogd") is None and shutil.which("virtlogd"):
            _, proc = run(["virtlogd", "-d"])
            pid = _daemon_pid("/run/virtlogd.pid", "virtlogd")
            if proc.returncode == 0 and pid:
                self.ours.append(("virtlogd", pid))
        self._start_libvirtd()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._answers():
                self.available = True
                return True
            time.sleep(0.2)
        print("libvirtd did not come up: the virsh columns are skipped")
        return False

    def _start_libvirtd(self) -> None:
        """Start libvirtd.  Where /dev/kvm is not usable by the QEMU user (here: mode
        0600 root, as no udev set it up) libvirt 9 finds its capability cache stale
        on every lookup ("KVM was enabled when probing, but it is not available now")
        and re-probes QEMU about ten times per `virsh create` (~45 s each).  No real
        libvirt host works like that, so libvirtd is started in a private mount
        namespace where /dev/kvm is an inaccessible file (the benchmark never uses
        KVM: its domains are type 'qemu', i.e. TCG), which requires libvirt's own
        per-domain /dev namespaces to be off (namespaces = [])."""
        conf = Path("/etc/libvirt/qemu.conf")
        tweak = (Path("/dev/kvm").exists() and conf.is_file() and shutil.which("unshare")
                 and not _kvm_accessible_to(_qemu_user()))
        proc = None
        if tweak:
            nokvm = self.tmp / "nokvm"
            nokvm.touch(mode=0o000)
            qconf = self.tmp / "qemu.conf"
            qconf.write_text(conf.read_text() + "\n# d0b bench\nnamespaces = [ ]\n")
            _, proc = run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           'mount --bind "$1" /dev/kvm && mount --bind "$2" "$3" && '
                           'exec libvirtd -d', "sh", str(nokvm), str(qconf), str(conf)])
            if proc.returncode == 0:
                NOTES.append("libvirtd was started by the benchmark in a private mount "
                             "namespace that hides /dev/kvm (not usable by the QEMU user "
                             "here) with namespaces = [ ]; see README")
            else:
                NOTES.append("could not start libvirtd in a private namespace, started it "
                             "plainly (expect slow virsh create):\n" + describe(proc))
        if proc is None or proc.returncode != 0:
            _, proc = run(["libvirtd", "-d"])
            if proc.returncode == 0:
                NOTES.append("libvirtd was started by the benchmark")
        pid = _daemon_pid("/run/libvirtd.pid", "libvirtd")
        if pid:
            self.ours.insert(0, ("libvirtd", pid))  # stopped before virtlogd

    def stop(self) -> None:
        for name, pid in self.ours:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            if not wait_gone(pid, 30.0):
                NOTES.append(f"{name} (pid {pid}) ignored SIGTERM; killed")
                kill_and_wait(pid)
        self.ours.clear()


class Virsh:
    """Transient libvirt domains, driven by the virsh command."""

    label = "virsh"

    def __init__(self, tmp: Path) -> None:
        # libvirt runs QEMU as an unprivileged user: it needs world-readable images
        self.img = Path(tempfile.mkdtemp(prefix="d0b-img-", dir="/tmp"))
        self.img.chmod(0o755)
        for f in ("vmlinuz", "initrd.img"):
            shutil.copyfile(GUEST / f, self.img / f)
            (self.img / f).chmod(0o644)
        self.prefix = f"d0b{os.getpid()}-"
        self.live: set[str] = set()
        self.used: set[str] = set()

    def xml(self, name: str, mem: int) -> Path:
        path = self.img / f"{name}.xml"
        path.write_text(f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{mem}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{self.img}/vmlinuz</kernel>
    <initrd>{self.img}/initrd.img</initrd>
    <cmdline>console=ttyS0 quiet</cmdline>
  </os>
  <features><acpi/></features>
  <devices>
    <controller type='usb' model='none'/>
    <serial type='file'><source path='{self.console_log(name)}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
""")
        return path

    def create(self, name: str, mem: int, paused: bool = False) -> float:
        name = self.prefix + name
        Path(self.console_log(name)).unlink(missing_ok=True)
        xml = self.xml(name, mem)
        self.used.add(name)
        secs, proc = run([*VIRSH, "create", str(xml), *(["--paused"] if paused else [])])
        if proc.returncode != 0:
            raise CommandFailed(describe(proc))
        self.live.add(name)
        return secs

    def console_log(self, name: str) -> str:
        if not name.startswith(self.prefix):
            name = self.prefix + name
        return str(self.img / f"{name}.log")

    def list(self, expect: int) -> float:
        secs, proc = run([*VIRSH, "list"])
        mine = [ln for ln in proc.stdout.splitlines() if self.prefix in ln]
        if proc.returncode != 0 or len(mine) != expect:
            raise CommandFailed(describe(proc))
        return secs

    def destroy(self, name: str) -> float:
        name = self.prefix + name
        secs, proc = run([*VIRSH, "destroy", name])
        if proc.returncode != 0:
            raise CommandFailed(describe(proc))
        self.live.discard(name)
        return secs

    def cleanup(self) -> None:
        # also a domain whose `virsh create` was interrupted: libvirtd finishes it
        _, proc = run([*VIRSH, "list", "--all", "--name"], timeout=60)
        self.live |= {n.strip() for n in proc.stdout.splitlines()
                      if n.strip().startswith(self.prefix)}

        def destroy(name: str) -> None:
            run([*VIRSH, "destroy", name], timeout=60)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(destroy, sorted(self.live)))
        self.live.clear()
        for name in self.used:
            Path(f"/var/log/libvirt/qemu/{name}.log").unlink(missing_ok=True)
        shutil.rmtree(self.img, ignore_errors=True)


# ---- measuring ----------------------------------------------------------------------

Samples = dict[str, dict[str, list[float]]]  # operation -> tool label -> seconds


def record(samples: Samples, op: str, tool: str, fn: Callable[[], float | None]) -> None:
    """Run one timed step; a failure is logged (dom0's also goes to PROBLEMS)."""
    try:
        secs = fn()
    except CommandFailed as exc:
        log(f"{tool}: {op} failed:\n{exc}")
        if tool != "dom0":
            NOTES.append(f"{tool}: {op} failed:\n{exc}")
        return
    if secs is None:
        log(f"{tool}: {op}: no result")
        if tool == "dom0":
            PROBLEMS.append(f"{op}: the prompt did not appear within {PROMPT_TIMEOUT:g} s")
        else:
            NOTES.append(f"{tool}: {op}: the prompt did not appear within {PROMPT_TIMEOUT:g} s")
        return
    samples.setdefault(op, {}).setdefault(tool, []).append(secs)


def measure_single(tools: list[Any], samples: Samples) -> None:
    """create (to running, to prompt), list with one domain, destroy; tools
    interleaved so that background load falls on all of them alike."""
    for tool in tools:  # warm-up: caches, first-use costs (not counted)
        try:
            secs = tool.create("w0", BOOT_MEM)
            tool.destroy("w0")
        except CommandFailed as exc:
            log(f"{tool.label}: warm-up failed:\n{exc}")
            continue
        if secs > 10:
            NOTES.append(f"{tool.label}: the warm-up create took {secs:.0f} s (libvirt "
                         "re-probing QEMU capabilities on every call? see README)")
    for rep in range(1, REPS + 1):
        if over_budget():
            NOTES.append(f"time budget reached: single-domain runs stopped after {rep - 1}")
            break
        for tool in tools:
            name = f"s{rep}"
            t0 = time.perf_counter()
            try:
                secs = tool.create(name, BOOT_MEM)
            except CommandFailed as exc:
                log(f"{tool.label}: create failed:\n{exc}")
                if tool.label != "dom0":
                    NOTES.append(f"{tool.label}: create failed:\n{exc}")
                continue
            samples.setdefault("create -> running", {}).setdefault(tool.label, []).append(secs)
            try:
                logpath = tool.console_log(name)
            except CommandFailed:
                logpath = None
            if logpath:
                record(samples, "create -> shell prompt", tool.label,
                       lambda lp=logpath, t=t0: wait_prompt(lp, t))
            if isinstance(tool, Dom0):
                tool.check_console_log(name)
            record(samples, "list (1 domain)", tool.label, lambda t=tool: t.list(1))
            record(samples, "destroy (running)", tool.label, lambda t=tool, n=name: t.destroy(n))
            got = samples.get("create -> shell prompt", {}).get(tool.label, [])
            prompt = f"{got[-1] * 1000:.0f} ms" if got else "-"
            log(f"run {rep} {tool.label}: create {secs * 1000:.0f} ms, prompt {prompt}")


def measure_many(tools: list[Any], samples: Samples) -> None:
    """list with MANY paused small domains, then tear them down."""
    for tool in tools:
        if over_budget():
            NOTES.append(f"time budget reached: {tool.label} skipped in the {MANY}-domain list")
            continue
        names = [f"b{i:02d}" for i in range(1, MANY + 1)]
        started = []
        t0 = time.perf_counter()
        try:
            for name in names:
                if over_budget():
                    NOTES.append(f"time budget reached: {tool.label} got only {len(started)} "
                                 f"of {MANY} paused domains; its {MANY}-domain list skipped")
                    break
                tool.create(name, SMALL_MEM, paused=True)
                started.append(name)
        except CommandFailed as exc:
            log(f"{tool.label}: paused create #{len(started) + 1} failed:\n{exc}")
            if tool.label != "dom0":
                NOTES.append(f"{tool.label}: paused create failed:\n{exc}")
        if len(started) == MANY:
            total = time.perf_counter() - t0
            samples.setdefault(f"create {MANY} paused (total)", {}).setdefault(
                tool.label, []).append(total)
            log(f"{tool.label}: {MANY} paused domains up in {total:.1f} s")
            for _ in range(REPS):
                record(samples, f"list ({MANY} domains)", tool.label,
                       lambda t=tool: t.list(MANY))
        t0 = time.perf_counter()
        if isinstance(tool, Virsh):
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda n, t=tool: _quiet_destroy(t, n), started))
        else:
            for name in started:
                _quiet_destroy(tool, name)
        log(f"{tool.label}: {len(started)} domains torn down in "
            f"{time.perf_counter() - t0:.1f} s")


def _quiet_destroy(tool: Any, name: str) -> None:
    try:
        tool.destroy(name)
    except CommandFailed as exc:
        log(f"{tool.label}: destroy {name} failed:\n{exc}")


# ---- reporting ----------------------------------------------------------------------


def _fmt(secs: float) -> str:
    ms = secs * 1000
    return f"{ms:.1f}" if ms < 10 else f"{ms:.0f}"


def cell(values: list[float] | None) -> str:
    if not values:
        return "-"
    return f"{_fmt(statistics.median(values))} / {_fmt(min(values))}"


def median(samples: Samples, op: str, tool: str) -> float | None:
    values = samples.get(op, {}).get(tool)
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def table(title: str, ops: list[str], samples: Samples) -> None:
    print(f"\n{title}  (median / min in ms over the runs; ratios of medians)")
    head = "%-28s %15s %15s %15s %9s %10s" % ("operation", "dom0 (ms)", "raw QEMU (ms)",
                                            "virsh (ms)", "dom0/raw", "dom0/virsh")
    print(head)
    print("-" * len(head))
    for op in ops:
        row = samples.get(op, {})
        d, r, v = (median(samples, op, t) for t in ("dom0", "raw QEMU", "virsh"))
        print("%-28s %15s %15s %15s %9s %10s" % (
            op, cell(row.get("dom0")), cell(row.get("raw QEMU")), cell(row.get("virsh")),
            ratio(d, r), ratio(d, v)))


def goals(samples: Samples, have_virsh: bool) -> None:
    print("\nGoals")

    def verdict(ok: bool | None) -> str:
        return "n/a " if ok is None else ("PASS" if ok else "MISS")

    lst = f"list ({MANY} domains)"
    d, v = median(samples, lst, "dom0"), median(samples, lst, "virsh")
    ok = None if d is None or v is None else d <= v
    why = "" if have_virsh else " (virsh skipped)"
    print(f"  {verdict(ok)}  xm list at {MANY} domains no slower than virsh list: "
          f"{_ms(d)} vs {_ms(v)}{why}")
    d, v = median(samples, "create -> running", "dom0"), median(
        samples, "create -> running", "virsh")
    ok = None if d is None or v is None else d <= v / 2
    print(f"  {verdict(ok)}  xm create (to running) at most half of virsh create: "
          f"{_ms(d)} vs {_ms(v)} (half: {_ms(v / 2 if v else None)}){why}")
    d = median(samples, "destroy (running)", "dom0")
    ok = None if d is None else d < 0.2
    print(f"  {verdict(ok)}  xm destroy under 200 ms: {_ms(d)}")


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.0f} ms"


def environment() -> None:
    print_host("dom0 core benchmark")
    print(f"guest: {GUEST} ({BOOT_MEM} MiB to boot, {SMALL_MEM} MiB paused x{MANY}); "
          f"{REPS} runs each")


def is_qemu(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().startswith("qemu-system")
    except OSError:
        return False


def check_prerequisites() -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root")
    for b in ("xm", "xend"):
        if not (BIN / b).exists():
            problems.append(f"{BIN / b} missing (make setup)")
    if not shutil.which(QEMU):
        problems.append(f"{QEMU} is not installed")
    for f in ("vmlinuz", "initrd.img"):
        if not (GUEST / f).is_file():
            problems.append(f"guest image {GUEST / f} missing (make guest)")
    return problems


def print_host(title: str) -> None:
    """The first lines of every benchmark: what ran, on what, and what competed."""
    qemu = subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout
    load = os.getloadavg()
    print(f"{title}   {time.strftime('%Y-%m-%d %H:%M:%S')}")
    print(f"host: {os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{qemu.splitlines()[0] if qemu else QEMU + ' ?'}; TCG only")
    others = [p for p in pids_mentioning("qemu-system") if is_qemu(p)]
    if others:
        print(f"note: {len(others)} QEMU process(es) not started by this benchmark are "
              "running and compete for the CPUs")


def interrupt_on_sigterm() -> None:
    """SIGTERM ends a run as Ctrl-C does: through the callers' ``finally`` cleanup."""
    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)


def print_epilogue(notes: list[str], problems: list[str], start: float) -> int:
    """The end of every benchmark's report: notes, dom0's problems verbatim, the time."""
    if notes:
        print("\nNotes")
        for n in notes:
            print("  - " + n.replace("\n", "\n    "))
    if problems:
        print("\nProblems in dom0 (exact commands and output)")
        for p in problems:
            print("  - " + p.replace("\n", "\n    "))
    print(f"\ntotal time {time.monotonic() - start:.0f} s")
    return 0


def main() -> int:
    missing = check_prerequisites()
    if missing:
        print("cannot run the benchmark: " + "; ".join(missing), file=sys.stderr)
        return 1

    interrupt_on_sigterm()
    environment()
    tmp = Path(tempfile.mkdtemp(prefix="d0b-", dir="/tmp"))
    dom0 = Dom0(tmp)
    raw = Raw(tmp)
    libvirt = Libvirt(tmp)
    virsh: Virsh | None = None
    samples: Samples = {}
    floor: list[float] = []
    interrupted = False
    try:
        log("starting a private xend")
        secs = dom0.start()
        log(f"xend start: {secs * 1000:.0f} ms")
        if libvirt.ensure():
            virsh = Virsh(tmp)
        tools: list[Any] = [dom0, raw] + ([virsh] if virsh else [])
        for _ in range(REPS):  # for scale: the floor of any command written in Python
            floor.append(run([str(BIN / "python"), "-c", "pass"])[0])
        log("1+3. create / list (1 domain) / destroy")
        measure_single(tools, samples)
        log(f"2. list with {MANY} paused domains")
        measure_many(tools, samples)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted")
    except CommandFailed as exc:
        log(f"stopped: {exc}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log("cleaning up")
        for step in (dom0.cleanup, raw.cleanup, *([virsh.cleanup] if virsh else []),
                     libvirt.stop):
            try:
                step()
            except Exception as exc:  # one failing step must not skip the others
                log(f"cleanup step {step.__qualname__} failed: {exc!r}")
        # the last resort: any QEMU of ours still running (by our unique names and paths)
        marks = [str(tmp) + "/"] + ([f"guest={virsh.prefix}", str(virsh.img) + "/"]
                                    if virsh else [])
        for mark in marks:
            for pid in pids_mentioning(mark):
                log(f"killing leftover process {pid} ({mark})")
                kill_and_wait(pid)
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if interrupted:
        return 130

    table("1. create latency", ["create -> running", "create -> shell prompt"], samples)
    table(f"2. list latency (1 booted domain; {MANY} paused {SMALL_MEM} MiB domains)",
          ["list (1 domain)", f"list ({MANY} domains)", f"create {MANY} paused (total)"],
          samples)
    if floor:
        print(f"for scale: starting the venv's Python alone (python -c pass): {cell(floor)} ms")
    table("3. destroy latency (running, booted guest)", ["destroy (running)"], samples)
    print("\nraw QEMU: create = qemu -daemonize exiting; list = a Python process doing "
          "qmp_capabilities + query-status on each QMP socket; destroy = SIGKILL + wait "
          "for the pid, in-process (no command start-up)")
    goals(samples, virsh is not None)
    return print_epilogue(NOTES, PROBLEMS, START)


if __name__ == "__main__":
    sys.exit(main())
