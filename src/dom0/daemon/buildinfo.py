"""Who built the "hypervisor", with what and when: ``xm info``'s ``cc_*`` and
``xen_changeset`` rows.

Xen printed the compiler, user, DNS domain and date of its own build.  Our
hypervisor is QEMU, installed from a distribution package, so:

* ``cc_compiler`` is the compiler recorded in QEMU's binary (its ELF ``.comment``,
  ``GCC: (Debian 12.2.0-14) 12.2.0``).  Distribution binaries are usually stripped of
  that section; then it is the compiler recorded in the Python running xend (the
  other half of our hypervisor), or in ``sys.version`` as the last resort.  Printed
  as ``gcc -v`` prints it, which is what Xen's build recorded:
  ``gcc version 12.2.0 (Debian 12.2.0-14) ``.
* ``cc_compile_by``/``cc_compile_domain``/``cc_compile_date`` come from the first
  entry of the QEMU package's Debian changelog: its trailer names the uploader
  (``mjt@tls.msk.ru`` -> ``mjt``, ``tls.msk.ru``) and its date is the one Debian's
  reproducible builds stamp into the binary (``SOURCE_DATE_EPOCH``).  Without a
  changelog: the binary's owner (``root``), no domain, and its modification time.
* ``xen_changeset`` reads like Mercurial's (``<date> <changeset>``): the changelog's
  date and the package version, or ``unavailable`` as Xen said without one.
"""

from __future__ import annotations

import email.utils
import gzip
import os
import platform
import pwd
import re
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass

#: ``date``'s format, as Xen's build recorded cc_compile_date
DATE_FORMAT = "%a %b %d %H:%M:%S %Z %Y"
#: Mercurial's date format, as in Xen's xen_changeset
HG_DATE_FORMAT = "%a %b %d %H:%M:%S %Y +0000"


@dataclass(frozen=True)
class BuildInfo:
    compiler: str
    compile_by: str
    compile_domain: str
    compile_date: str
    changeset: str


def elf_comment(path: str) -> list[str]:
    """The strings of an ELF file's ``.comment`` section (empty when it has none)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only: we run x86_64
                return []
            order = "<" if head[5] == 1 else ">"
            shoff, = struct.unpack_from(order + "Q", head, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", head, 0x3A)
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            sections = [struct.unpack_from(order + "IIQQQQ", table, i * shentsize)
                        for i in range(shnum)]
            if shstrndx >= len(sections):
                return []
            f.seek(sections[shstrndx][4])
            names = f.read(sections[shstrndx][5])
            for name_off, _type, _flags, _addr, offset, size in sections:
                if names[name_off:names.find(b"\0", name_off)] == b".comment":
                    f.seek(offset)
                    data = f.read(min(size, 65536))
                    return [s.decode(errors="replace") for s in data.split(b"\0") if s]
    except (OSError, struct.error, IndexError):
        pass
    return []


def gcc_version_line(comment: str) -> str | None:
    """``GCC: (Debian 12.2.0-14) 12.2.0`` -> ``gcc version 12.2.0 (Debian 12.2.0-14) ``."""
    m = re.match(r"GCC: \((.*)\) (\S+)", comment)
    if m:
        return f"gcc version {m.group(2)} ({m.group(1)}) "
    m = re.match(r"(?:.*\s)?clang version (\S+)", comment)
    if m:
        return f"clang version {m.group(1)} "
    return None


def compiler(qemu_path: str | None) -> str:
    for path in (qemu_path, os.path.realpath(sys.executable)):
        for comment in elf_comment(path) if path else []:
            line = gcc_version_line(comment)
            if line:
                return line
    # "GCC 12.2.0" or "Clang 14.0.6 (...)": the version, without the vendor's suffix
    name, _, version = platform.python_compiler().partition(" ")
    return f"{name.lower()} version {version.split()[0] if version else '?'} "


def _owning_package(path: str) -> str | None:
    if not shutil.which("dpkg-query"):
        return None
    try:
        out = subprocess.run(["dpkg-query", "-S", path], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    pkg = out.split(":", 1)[0].strip()
    return pkg or None


def changelog_head(path: str) -> tuple[str, str, float] | None:
    """(package version, uploader's address, date) of a Debian changelog's first entry."""
    try:
        with gzip.open(path, "rt", errors="replace") as f:
            first = f.readline()
            for line in f:
                if line.startswith(" -- "):
                    break
            else:
                return None
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    version = re.search(r"\(([^)]*)\)", first)
    m = re.match(r" -- .*<([^>]*)>\s+(.*)$", line.rstrip())
    if not version or not m:
        return None
    when = email.utils.parsedate_tz(m.group(2))
    if when is None:
        return None
    return version.group(1), m.group(1), float(email.utils.mktime_tz(when))


def collect(qemu_binary: str) -> BuildInfo:
    qemu_path = shutil.which(qemu_binary) or qemu_binary
    real = os.path.realpath(qemu_path)
    head = None
    pkg = _owning_package(real) or _owning_package(qemu_path)
    if pkg:
        pkg = pkg.split(",")[0].strip()
        for name in ("changelog.Debian.gz", "changelog.gz"):
            head = changelog_head(f"/usr/share/doc/{pkg}/{name}")
            if head:
                break
    if head:
        version, address, stamp = head
        user, _, domain = address.partition("@")
        return BuildInfo(compiler(real), user, domain,
                         time.strftime(DATE_FORMAT, time.gmtime(stamp)),
                         f"{time.strftime(HG_DATE_FORMAT, time.gmtime(stamp))} {version}")
    try:
        st = os.stat(real)
        owner = pwd.getpwuid(st.st_uid).pw_name
        date = time.strftime(DATE_FORMAT, time.gmtime(st.st_mtime))
    except (OSError, KeyError):
        owner, date = "root", ""
    return BuildInfo(compiler(real), owner, "", date, "unavailable")
