#!/usr/bin/env python3
"""HVM benchmark of dom0: ``xm create`` of an HVM domain booting the project's disk
image through the firmware (SeaBIOS, SYSLINUX, the guest kernel) until its shell
prompt, beside raw QEMU with the same devices and ``virsh create`` of the same image
with the same devices, ratios printed in one run (about 1-2 minutes)::

    python bench/bench_hvm.py

The drivers are bench_core's (a private xend, bare QEMU, transient libvirt domains),
each given an HVM machine: 128 MiB, one vCPU, the disk image as an IDE disk (a fresh
copy per run, made before the clock starts), a Cirrus VGA card with no display,
the serial console logged to a file.  See bench/README.md ("HVM").
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import bench_core as core  # noqa: E402

DISK = core.GUEST / "disk.img"
REPS = 3
#: runs measure_single makes (a warm-up w0, then s1..sREPS)
NAMES = ["w0"] + [f"s{i}" for i in range(1, REPS + 1)]


def copies(directory: Path) -> dict[str, Path]:
    """A fresh copy of the disk image per run, made before any clock starts."""
    out = {}
    for name in NAMES:
        out[name] = directory / f"{name}.img"
        shutil.copyfile(DISK, out[name])
        out[name].chmod(0o666)
    return out


class HvmDom0(core.Dom0):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.domcfg.write_text("builder = 'hvm'\nkernel = '/usr/lib/xen/boot/hvmloader'\n"
                               f"memory = {core.BOOT_MEM}\nname = 'b1'\nserial = 'pty'\n")
        self.disks = copies(self.dir)

    def create(self, name: str, mem: int, paused: bool = False) -> float:
        self.logs_before = self._console_logs()
        secs, proc = self.xm("create", str(self.domcfg), f"name={name}", f"memory={mem}",
                             f"disk=file:{self.disks[name]},ioemu:hda,w")
        self._check(proc)
        self.live.add(name)
        return secs


class HvmRaw(core.Raw):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.disks = copies(self.dir)

    def create(self, name: str, mem: int, paused: bool = False) -> float:
        p = self.paths(name)
        argv = [core.QEMU, "-machine", "pc,hpet=off", "-accel", "tcg", "-cpu", "qemu64",
                "-m", str(mem), "-nodefaults", "-no-user-config", "-vga", "cirrus",
                "-display", "none", "-boot", "order=c", "-rtc", "base=utc",
                "-blockdev", f"node-name=d0,driver=file,filename={self.disks[name]}",
                "-device", "ide-hd,drive=d0,bus=ide.0,unit=0",
                "-chardev", f"socket,id=c,path={p['con']},server=on,wait=off,logfile={p['log']}",
                "-serial", "chardev:c", "-qmp", f"unix:{p['qmp']},server=on,wait=off",
                "-daemonize", "-pidfile", p["pid"]]
        secs, proc = core.run(argv)
        if proc.returncode != 0:
            raise core.CommandFailed(core.describe(proc))
        self.pids[name] = int(Path(p["pid"]).read_text().strip())
        return secs


class HvmVirsh(core.Virsh):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.disks = copies(self.img)

    def xml(self, name: str, mem: int) -> Path:
        path = self.img / f"{name}.xml"
        disk = self.disks[name[len(self.prefix):]]
        path.write_text(f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{mem}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{disk}'/>
      <target dev='hda' bus='ide'/>
    </disk>
    <controller type='usb' model='none'/>
    <video><model type='cirrus'/></video>
    <serial type='file'><source path='{self.console_log(name)}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
""")
        return path


def main() -> int:
    missing = core.check_prerequisites()
    if not DISK.is_file():
        missing.append(f"{DISK} missing (make guest)")
    if missing:
        print("cannot run the benchmark: " + "; ".join(missing), file=sys.stderr)
        return 1
    core.REPS = REPS
    core.interrupt_on_sigterm()
    core.print_host("dom0 HVM benchmark")
    print(f"guest: {DISK} as an IDE disk (fresh copy per run), {core.BOOT_MEM} MiB, "
          f"1 vCPU, SeaBIOS; {REPS} runs each after a warm-up")
    tmp = Path(tempfile.mkdtemp(prefix="d0b-", dir="/tmp"))
    dom0, raw = HvmDom0(tmp), HvmRaw(tmp)
    libvirt = core.Libvirt(tmp)
    virsh: HvmVirsh | None = None
    samples: core.Samples = {}
    interrupted = False
    try:
        core.log("starting a private xend")
        dom0.start()
        if libvirt.ensure():
            virsh = HvmVirsh(tmp)
        tools: list[Any] = [dom0, raw] + ([virsh] if virsh else [])
        core.measure_single(tools, samples)
    except KeyboardInterrupt:
        interrupted = True
        core.log("interrupted")
    except core.CommandFailed as exc:
        core.log(f"stopped: {exc}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        core.log("cleaning up")
        for step in (dom0.cleanup, raw.cleanup, *([virsh.cleanup] if virsh else []),
                     libvirt.stop):
            try:
                step()
            except Exception as exc:  # one failing step must not skip the others
                core.log(f"cleanup step {step.__qualname__} failed: {exc!r}")
        marks = [str(tmp) + "/"] + ([f"guest={virsh.prefix}", str(virsh.img) + "/"]
                                    if virsh else [])
        for mark in marks:
            for pid in core.pids_mentioning(mark):
                core.kill_and_wait(pid)
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if interrupted:
        return 130
    core.table("HVM create latency (disk image -> firmware -> guest shell)",
               ["create -> running", "create -> shell prompt", "destroy (running)"], samples)
    return core.print_epilogue(core.NOTES, core.PROBLEMS, core.START)


if __name__ == "__main__":
    sys.exit(main())
