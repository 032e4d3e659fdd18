"""Fixtures for functional tests: private xend "hosts" booting real QEMU guests
from the project's own image.  Every host records what it started and tears all
of it down, logs shown on failure; readiness waits have explicit budgets."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from guestconsole import GuestConsole  # noqa: E402

from dom0.client import XendClient  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GUEST_DIR = Path(os.environ.get("DOM0_GUEST_DIR", REPO / "build" / "guest"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "functional" in str(item.fspath):
            item.add_marker(pytest.mark.functional)


@pytest.fixture(scope="session", autouse=True)
def _prerequisites() -> None:
    """Functional tests need what `make test` sets up; say so plainly if absent."""
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root")
    if not shutil.which("qemu-system-x86_64"):
        problems.append("qemu-system-x86_64 is not installed")
    for f in ("vmlinuz", "initrd.img"):
        if not (GUEST_DIR / f).is_file():
            problems.append(f"guest image {GUEST_DIR / f} missing (make guest)")
    if problems:
        pytest.fail("functional test prerequisites: " + "; ".join(problems), pytrace=False)


def veth(ns_a: str, dev_a: str, addr_a: str | None, ns_b: str, dev_b: str,
         addr_b: str | None) -> None:
    """A veth pair between two network namespaces, both ends up (with the addresses
    given) and loopback up in both: how the tests wire hosts and servers together."""
    subprocess.run(["ip", "link", "add", dev_a, "netns", ns_a, "type", "veth", "peer", "name",
                    dev_b, "netns", ns_b], check=True)
    for ns, dev, addr in ((ns_a, dev_a, addr_a), (ns_b, dev_b, addr_b)):
        cmds = [["ip", "link", "set", "lo", "up"], ["ip", "link", "set", dev, "up"]]
        if addr:
            cmds.insert(0, ["ip", "addr", "add", addr, "dev", dev])
        for cmd in cmds:
            subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True)


class Host:
    """One private xend instance with its own paths (a "host")."""

    def __init__(self, extra_config: str = "", netns: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="d0t-", dir="/tmp"))
        #: a network namespace of its own: xend, its bridges, taps and scripts live there
        self.netns = self.dir.name if netns else None
        if self.netns:
            subprocess.run(["ip", "netns", "add", self.netns], check=True)
        self.config = self.dir / "xend-config.sxp"
        self.socket = self.dir / "xend.sock"
        self.config.write_text(f"""
(logfile {self.dir}/xend.log)
(loglevel DEBUG)
(xend-api-socket {self.socket})
(xend-pid-file {self.dir}/xend.pid)
(xend-run-path {self.dir}/run)
(xend-log-path {self.dir}/log)
(xend-state-path {self.dir}/state)
(xend-domains-path {self.dir}/domains)
(xend-security-path {self.dir}/security)
(xend-dump-path {self.dir}/dump)
(qemu-accel tcg)
(domain-minimum-restart-time 20)
(domain-shutdown-timeout 30)
(xend-scripts-path {REPO}/scripts/xen)
{extra_config}
""")
        self.env = dict(os.environ, XEND_CONFIG=str(self.config), XM_SERVER=str(self.socket))
        if self.netns:
            self.ns_run("ip", "link", "set", "lo", "up")

    # ---- xend and xm ------------------------------------------------------------

    def ns_run(self, *argv: str, check: bool = True, timeout: float = 120,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
        """A command in this host's network namespace."""
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        proc = subprocess.run([*prefix, *argv], capture_output=True, text=True, env=self.env,
                              timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr}")
        return proc

    def xend(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        proc = subprocess.run([*prefix, str(BIN / "xend"), *args], env=self.env,
                              capture_output=True, text=True, timeout=180)
        if check and proc.returncode != 0:
            raise AssertionError(f"xend {' '.join(args)} -> {proc.returncode}: {proc.stderr}")
        return proc

    def start(self) -> Host:
        self.xend("start")
        return self

    def xend_pid(self) -> int | None:
        try:
            return int((self.dir / "xend.pid").read_text())
        except (OSError, ValueError):
            return None

    def kill9(self) -> None:
        """kill -9 xend and wait until it is really gone."""
        pid = self.xend_pid()
        assert pid, "xend is not running"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        break
            except OSError:
                break
            time.sleep(0.02)

    def xm(self, *args: str, check: bool = True, timeout: float = 120,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(BIN / "xm"), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, input=input, cwd=self.dir)
        if check and proc.returncode != 0:
            raise AssertionError(f"xm {' '.join(args)} -> {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def client(self) -> XendClient:
        return XendClient(str(self.socket))

    def write_config(self, name: str, /, **values: Any) -> Path:
        """A Python domain config file booting the project's guest (file <name>.cfg;
        the domain's name is *name* unless given)."""
        values.setdefault("kernel", str(GUEST_DIR / "vmlinuz"))
        values.setdefault("ramdisk", str(GUEST_DIR / "initrd.img"))
        values.setdefault("memory", 96)  # this kernel needs more than 64 MiB
        values.setdefault("extra", "quiet cryptomgr.notests")
        values.setdefault("name", name)
        path = self.dir / f"{name}.cfg"
        path.write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()))
        return path

    def create(self, name: str, *args: str, **values: Any) -> dict[str, Any]:
        path = self.write_config(name, **values)
        self.xm("create", "-q", str(path), *args)
        return self.info(name)

    def info(self, dom: str | int) -> dict[str, Any]:
        return self.client().call("domain.info", dom=str(dom))  # type: ignore[no-any-return]

    def console(self, dom: str | int, boot_timeout: float = 90.0) -> GuestConsole:
        """A shell on the guest's serial console, once it answers."""
        con = GuestConsole(self.info(dom)["console"])
        con.wait_prompt(boot_timeout)
        return con

    def wait_for(self, predicate: Any, timeout: float = 60.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.1)

    # ---- teardown ---------------------------------------------------------------

    def logs(self) -> str:
        out = []
        for p in [self.dir / "xend.log", *sorted((self.dir / "log").glob("*/*.log"))]:
            try:
                out.append(f"==> {p} <==\n{p.read_text(errors='replace')[-3000:]}")
            except OSError:
                pass
        return "\n".join(out)

    def teardown(self) -> None:
        if self.xend_pid():
            self.xend("stop", check=False)
        # whatever QEMU this host started, by its paths, is killed
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if str(self.dir).encode() in cmd and (b"qemu" in cmd or b"xend" in cmd):
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        if self.netns:
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        if not os.environ.get("DOM0_KEEP_TEST_HOSTS"):  # set it to read their logs after
            shutil.rmtree(self.dir, ignore_errors=True)


# ---- relocation credentials (README "Security") -------------------------------------

RELOCATION_KEY = "dom0-functional-tests-shared-relocation-key"


def write_secret(path: Path, text: str) -> Path:
    """A file only its owner can read, from its first byte (never 0644 in between)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def add_config(host: Host, text: str) -> Host:
    """More xend-config lines for a host that has not started yet."""
    host.config.write_text(host.config.read_text() + text + "\n")
    return host


def keyed(host: Host, key: str = RELOCATION_KEY) -> Host:
    """Give a host (not started yet) the shared relocation key."""
    path = write_secret(host.dir / "relocation.key", key + "\n")
    return add_config(host, f"(xend-relocation-key-file {path})")


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A throwaway CA (certificate, key) made with the openssl CLI."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}-ca.pem", directory / f"{name}-ca.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={name} relocation CA", "-keyout", str(key), "-out", str(cert),
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                   check=True, capture_output=True)
    return cert, key


def make_cert(directory: Path, ca: tuple[Path, Path], name: str) -> tuple[Path, Path]:
    """A host certificate (for both TLS client and server) signed by *ca*; its key 0600."""
    cert, key, csr = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.csr"
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                    "-keyout", str(key), "-out", str(csr)], check=True, capture_output=True)
    ext = directory / f"{name}.ext"
    ext.write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]),
                    "-CAkey", str(ca[1]), "-CAcreateserial", "-days", "1", "-extfile", str(ext),
                    "-out", str(cert)], check=True, capture_output=True)
    key.chmod(0o600)
    return cert, key


def with_certificate(host: Host, ca_cert: Path, cert: tuple[Path, Path]) -> Host:
    """Mutual TLS for a host (not started yet): the CA it trusts, its own identity."""
    return add_config(host, f"(xend-relocation-ca-file {ca_cert})\n"
                            f"(xend-relocation-server-ssl-cert-file {cert[0]})\n"
                            f"(xend-relocation-server-ssl-key-file {cert[1]})")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def make_host(request: pytest.FixtureRequest) -> Iterator[Any]:
    hosts: list[Host] = []

    def factory(extra_config: str = "", start: bool = True, netns: bool = False) -> Host:
        host = Host(extra_config, netns)
        hosts.append(host)
        return host.start() if start else host

    yield factory
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for host in hosts:
        if failed:
            print(f"\n----- logs of {host.dir} -----\n{host.logs()}")
        host.teardown()


@pytest.fixture
def host(make_host: Any) -> Host:
    return make_host()  # type: ignore[no-any-return]
