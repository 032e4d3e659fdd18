"""Virtual TPMs (issue 12 item 5), checked from inside the guest: raw TPM 1.2
commands written to /dev/tpm0 from the guest's shell (busybox printf, dd and od),
the answers read back on the same descriptor, as any TPM user does.

What a TPM keeps is checked where a real TPM keeps it: a PCR extended by the
guest keeps its value while the guest runs on, through ``xm save``/``restore`` and
a live migration to this same host (the TPM's volatile state travels in QEMU's
stream); across a guest *reboot* a PCR is reset, as every TPM resets its PCRs at
TPM_Startup(ST_CLEAR), so what must survive a reboot (and a shutdown and start of a
managed domain) is the TPM's permanent state: the endorsement key the guest made."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import struct
import subprocess
from pathlib import Path

from conftest import GUEST_DIR, Host, keyed, veth
from guestconsole import GuestConsole

RELOCATION = "(xend-relocation-server yes)\n"
VTPM = ["instance=1,backend=0"]
#: TPM 1.2 ordinals (TPM Main Part 2) and result codes
PCR_READ, EXTEND, CREATE_EK, READ_PUBEK = 0x15, 0x14, 0x78, 0x7C
TPM_NO_ENDORSEMENT = 0x23
PCR = 12  # no one else extends it in this guest


def tpm(con: GuestConsole, ordinal: int, body: bytes = b"", tag: int = 0xC1,
        answer_tag: int = 0xC4) -> tuple[int, bytes]:
    """One TPM command (1.2 unless the tags say 2.0) from the guest's shell: written
    in one write to /dev/tpm0, the answer read on the same descriptor; (result code,
    payload)."""
    packet = struct.pack(">HII", tag, 10 + len(body), ordinal) + body
    octal = "".join(f"\\{b:03o}" for b in packet)
    out = con.run(f"(exec 3<>/dev/tpm0; printf '{octal}' >&3; "
                  "dd bs=4096 count=1 <&3 2>/dev/null | od -An -v -tx1)", timeout=60)
    answer = bytes.fromhex("".join(out.split()))
    print("TPM", hex(ordinal), answer.hex()[:80])
    got, size, result = struct.unpack(">HII", answer[:10])
    assert got == answer_tag and size == len(answer), out
    return result, answer[10:]


def pcr(con: GuestConsole) -> bytes:
    result, value = tpm(con, PCR_READ, struct.pack(">I", PCR))
    assert result == 0 and len(value) == 20
    return value


def extend(con: GuestConsole, text: bytes) -> bytes:
    result, value = tpm(con, EXTEND, struct.pack(">I", PCR) + hashlib.sha1(text).digest())
    assert result == 0
    return value


def pubek(con: GuestConsole) -> tuple[int, bytes]:
    return tpm(con, READ_PUBEK, bytes(20))


def create_ek(con: GuestConsole) -> None:
    # RSA (1), OAEP-SHA1 (3), no signature scheme (1); 2048 bits, 2 primes, e=65537
    parms = struct.pack(">IHHI", 1, 3, 1, 12) + struct.pack(">III", 2048, 2, 0)
    result, _ = tpm(con, CREATE_EK, os.urandom(20) + parms)
    assert result == 0


def states(h: Host, uuid: str) -> list[Path]:
    """The vTPM state directories of the domain *uuid* (not the link)."""
    return sorted((h.dir / "domains" / uuid).glob("vtpm.*"))


def swtpm_pid(h: Host, dom: str) -> int:
    m = re.search(r"\(pid (\d+)\)", h.xm("vtpm-list", "--long", dom).stdout)
    assert m, h.xm("vtpm-list", "--long", dom).stdout
    return int(m.group(1))


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_pcr_value_follows_the_guest_through_save_restore_and_migration(make_host) -> None:  # type: ignore[no-untyped-def]
    h = make_host(RELOCATION, netns=True)
    info = h.create("tpm", vtpm=VTPM)
    uuid = info["uuid"]
    listing = h.xm("vtpm-list", "tpm").stdout.splitlines()
    assert listing[0] == "Idx  BE handle state evt-ch ring-ref BE-path"
    assert listing[1].split() == ["0", "0", "0", "4", "-1", "-1",
                                  f"/local/domain/0/backend/vtpm/{info['domid']}/0"]
    assert "(pref_instance 1)" in h.xm("vtpm-list", "-l", "tpm").stdout
    assert "(device (vtpm (pref_instance 1) (backend 0)))" in h.xm("list", "-l", "tpm").stdout
    # its state: under the domain's directory, private
    (state,) = states(h, uuid)
    assert (h.dir / "domains" / uuid / "vtpm").resolve() == state
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    with h.console("tpm") as con:
        assert "tpm0" in con.run("ls /dev/tpm0 /sys/class/tpm")
        assert "1" in con.run("cat /sys/class/tpm/tpm0/tpm_version_major")
        assert pcr(con) == bytes(20)
        value = extend(con, b"measured by the guest")
        assert pcr(con) == value != bytes(20)
    files = [f for f in state.iterdir() if f.stat().st_size]
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)

    image = h.dir / "tpm.save"
    h.xm("save", "tpm", str(image))
    assert states(h, uuid) == []  # an unmanaged domain saved: its TPM is in the image
    h.xm("restore", str(image))
    with h.console("tpm") as con:
        assert pcr(con) == value
    (restored,) = states(h, uuid)

    h.xm("migrate", "-l", "tpm", "localhost", timeout=300)
    (migrated,) = states(h, uuid)  # a directory of its own; the leaving copy's is gone
    assert migrated != restored
    assert (h.dir / "domains" / uuid / "vtpm").resolve() == migrated
    with h.console("tpm") as con:
        assert pcr(con) == value
        value = extend(con, b"after the migration")

    # xend killed: the new one finds the running emulator and the guest's TPM answers
    pid = swtpm_pid(h, "tpm")
    h.kill9()
    h.xend("start")
    assert swtpm_pid(h, "tpm") == pid
    assert h.xm("vtpm-list", "tpm").stdout.splitlines()[1].split()[3] == "4"
    with h.console("tpm") as con:
        assert pcr(con) == value

    # the emulator dies under the running guest: said plainly, and destroy cleans up
    os.kill(pid, 9)
    h.wait_for(lambda: not alive(pid), 10, "swtpm to die")
    assert h.xm("vtpm-list", "tpm").stdout.splitlines()[1].split()[3] == "6"
    h.kill9()
    h.xend("start")  # the next xend says so where the user looks
    assert "vTPM emulator (swtpm) is gone" in h.xm("dmesg").stdout
    h.xm("destroy", "tpm")
    assert states(h, uuid) == [] and not (h.dir / "domains" / uuid / "vtpm").exists()


def test_the_permanent_state_survives_reboot_and_restart_and_goes_with_delete(make_host) -> None:  # type: ignore[no-untyped-def]
    h = make_host()
    cfg = h.write_config("ek", vtpm=VTPM)
    h.xm("new", str(cfg))
    h.xm("start", "ek")
    uuid = h.info("ek")["uuid"]
    with h.console("ek") as con:
        assert pubek(con)[0] == TPM_NO_ENDORSEMENT  # a new TPM has no EK yet
        create_ek(con)
        result, key = pubek(con)
        assert result == 0 and len(key) > 256
        value = extend(con, b"before the reboot")
    pid = swtpm_pid(h, "ek")
    h.xm("reboot", "-w", "ek", timeout=180)
    with h.console("ek") as con:
        assert pcr(con) == bytes(20) != value  # TPM_Startup(ST_CLEAR) reset it
        assert pubek(con) == (0, key)  # the permanent state did not change
    assert swtpm_pid(h, "ek") == pid
    h.xm("shutdown", "-w", "ek", timeout=180)
    assert not alive(pid)
    (state,) = states(h, uuid)  # a managed domain keeps its TPM while it is defined
    h.xm("start", "ek")
    with h.console("ek") as con:
        assert pubek(con) == (0, key)
    assert states(h, uuid) == [state]
    h.xm("destroy", "ek")
    h.xm("delete", "ek")
    assert not (h.dir / "domains" / uuid / "vtpm").exists() and states(h, uuid) == []
    assert subprocess.run(["pgrep", "-f", f"{h.dir}/run"], capture_output=True).stdout == b""


def test_tpm_2_0_by_option(make_host) -> None:  # type: ignore[no-untyped-def]
    """``(vtpm-version 2.0)`` in xend-config: the guest finds a TPM 2.0 (on CRB) that
    answers TPM2_GetRandom."""
    h = make_host("(vtpm-version 2.0)")
    h.create("tpm2", vtpm=VTPM)
    with h.console("tpm2") as con:
        assert "2" in con.run("cat /sys/class/tpm/tpm0/tpm_version_major")
        # TPM2_GetRandom (0x17B) of 8 bytes, no sessions (tag 0x8001)
        result, payload = tpm(con, 0x17B, struct.pack(">H", 8), tag=0x8001, answer_tag=0x8001)
        assert result == 0 and struct.unpack(">H", payload[:2]) == (8,) and len(payload) == 10
    assert h.xm("vtpm-list", "-l", "tpm2").stdout.count("(version 2.0)") == 1
    # QEMU crashes: on_crash=restart starts a new QEMU with a new emulator on the same
    # state, the old emulator stopped
    before, old_swtpm = h.info("tpm2"), swtpm_pid(h, "tpm2")
    os.kill(before["pid"], 9)
    h.wait_for(lambda: h.info("tpm2")["domid"] not in (None, before["domid"]) and
               h.info("tpm2")["state"] in ("r-----", "-b----"), 60, "the restart")
    assert not alive(old_swtpm) and swtpm_pid(h, "tpm2") != old_swtpm
    with h.console("tpm2") as con:
        result, _ = tpm(con, 0x17B, struct.pack(">H", 8), tag=0x8001, answer_tag=0x8001)
        assert result == 0
    h.xm("destroy", "tpm2")


def test_the_tpm_moves_to_another_host_with_its_version(make_host) -> None:  # type: ignore[no-untyped-def]
    """A live migration between two xends (two network namespaces): the PCR value
    arrives, the destination (set to give new domains TPM 2.0) keeps the guest's TPM
    1.2, and the source keeps none of the TPM's state."""
    a = keyed(make_host(start=False, netns=True))
    b = keyed(make_host("(xend-relocation-server yes)\n(xend-relocation-port 8002)\n"
                        "(xend-relocation-address 10.98.0.2)\n"
                        "(xend-relocation-hosts-allow '^10\\.98\\.0\\.1$')\n"
                        f"(xend-relocation-storage-roots {GUEST_DIR})\n(vtpm-version 2.0)",
                        start=False, netns=True))
    veth(a.netns, "tpm0", "10.98.0.1/24", b.netns, "tpm1", "10.98.0.2/24")
    a.xend("start")
    b.xend("start")
    uuid = a.create("away", vtpm=VTPM)["uuid"]
    with a.console("away") as con:
        value = extend(con, b"measured on host a")
    a.xm("migrate", "--live", "away", "10.98.0.2", timeout=300)
    assert states(a, uuid) == [] and not (a.dir / "domains" / uuid / "vtpm").exists()
    assert len(states(b, uuid)) == 1
    with b.console("away") as con:
        assert "1" in con.run("cat /sys/class/tpm/tpm0/tpm_version_major")
        assert pcr(con) == value
    assert "(version 1.2)" in b.xm("vtpm-list", "-l", "away").stdout
    b.xm("destroy", "away")
    assert states(b, uuid) == []
