"""Where every file of one xend instance lives, derived from its configuration.

Nothing else in dom0 builds paths: several xend instances on one machine (the
two-host tests) differ only in these roots.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DomainPaths:
    """Runtime files of one launch of a domain, keyed by a unique instance id (the
    domain ID changes on reboot, and rename-restart keeps two QEMUs of one UUID)."""

    run_dir: str
    qmp_socket: str
    #: QEMU's end of the serial console (xend's relay is its only client)
    serial_socket: str
    #: xend's console relay, where `xm console` attaches
    console_socket: str
    pidfile: str
    console_log: str
    qemu_log: str
    #: a local socket a migration or save stream passes through
    migration_socket: str


@dataclass(frozen=True)
class Layout:
    state_dir: str  # SQLite database
    domains_dir: str  # managed domain store
    run_dir: str  # sockets, pidfiles
    log_dir: str  # console logs
    dump_dir: str  # xm dump-core default

    @property
    def database(self) -> str:
        return os.path.join(self.state_dir, "xend.db")

    def domain(self, instance: str) -> DomainPaths:
        run = os.path.join(self.run_dir, "dom", instance)
        return DomainPaths(
            run_dir=run,
            qmp_socket=os.path.join(run, "qmp.sock"),
            serial_socket=os.path.join(run, "serial.sock"),
            console_socket=os.path.join(run, "console.sock"),
            pidfile=os.path.join(run, "qemu.pid"),
            console_log=os.path.join(self.log_dir, "console", f"{instance}.log"),
            qemu_log=os.path.join(self.log_dir, "qemu", f"{instance}.log"),
            migration_socket=os.path.join(run, "migrate.sock"),
        )

    def checkpoint(self, uuid: str) -> str:
        """A managed domain's suspended state (``xm suspend``)."""
        return os.path.join(self.domains_dir, uuid, "checkpoint.chk")

    def vtpm_link(self, uuid: str) -> str:
        """A domain's vTPM state: a symlink to the directory its TPM uses now
        (``vtpm_state``).  A launch that takes a state from a stream (restore, incoming
        migration) fills a fresh directory of its own, so the guest migrating in to
        this same host never shares the leaving copy's; the link moves to it once it
        runs (domain/vtpm.py)."""
        return os.path.join(self.domains_dir, uuid, "vtpm")

    def vtpm_state(self, uuid: str, instance: str) -> str:
        """The vTPM state directory first used by the launch *instance*."""
        return os.path.join(self.domains_dir, uuid, f"vtpm.{instance}")

    def core_dump(self, name: str, domid: int | None, stamp: str) -> str:
        """Where ``xm dump-core`` (and on_crash=coredump-*) write by default."""
        return os.path.join(self.dump_dir, f"{stamp}-{name}.{domid}.core")

    def create_dirs(self) -> None:
        for path in (self.state_dir, self.domains_dir, self.run_dir,
                     os.path.join(self.run_dir, "dom"), os.path.join(self.log_dir, "console"),
                     os.path.join(self.log_dir, "qemu")):
            os.makedirs(path, mode=0o700, exist_ok=True)
