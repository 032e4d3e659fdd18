"""Graphical consoles of kernel (PV-style) guests: vfb/vnc lines give the guest a VGA
screen served over VNC, behind the VNC password, at the port ``xm list -l`` shows;
what the guest writes on its screen is what a VNC client sees."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import BIN, Host
from PIL import Image

VNCDO = BIN / "vncdo"


def capture(location: str, password: str, out: Path) -> subprocess.CompletedProcess[str]:
    """A VNC client (vncdotool, in its own process: its Twisted reactor runs once)
    capturing the screen at *location* (``host:port``)."""
    host, port = location.rsplit(":", 1)
    return subprocess.run([str(VNCDO), "-s", f"{host}::{port}", "-p", password,
                           "--timeout", "20", "capture", str(out)],
                          capture_output=True, text=True, timeout=60)


def lit_rows(png: Path) -> list[int]:
    """Per text row (16 pixel lines of the 720x400 VGA text screen), how many
    pixels are lit."""
    img = Image.open(png).convert("L")
    width, height = img.size
    px = img.load()
    rows = []
    for top in range(0, height - 15, 16):
        rows.append(sum(1 for y in range(top, top + 16) for x in range(width)
                        if px[x, y] > 100))
    return rows


def test_vfb_vnc_password_port_and_screen(host: Host) -> None:
    host.create("gfx", vfb=["vnc=1,vncpasswd=s3cret"])
    info = host.info("gfx")
    location = info["vnc"]
    assert re.fullmatch(r"127\.0\.0\.1:59\d\d", location), location
    long = host.xm("list", "-l", "gfx").stdout
    assert f"(location {location})" in long
    assert "s3cret" not in long
    assert "(device (vkbd))" in long  # a PV framebuffer comes with its virtual keyboard

    # a wrong password is refused; the right one gets the screen
    bad = capture(location, "wrong", host.dir / "bad.png")
    assert bad.returncode != 0 and not (host.dir / "bad.png").exists()

    con = host.console("gfx")
    # an empty screen, then 12 lines of '#' from the top: the client sees exactly them
    con.run("printf '\\033[2J\\033[H\\033[?25l' > /dev/tty1")
    blank = host.dir / "blank.png"
    assert capture(location, "s3cret", blank).returncode == 0
    assert sum(lit_rows(blank)) == 0
    con.run("for i in 1 2 3 4 5 6 7 8 9 10 11 12; do printf '%70s\\n' | tr ' ' '#'; done"
            " > /dev/tty1")
    shown = host.dir / "shown.png"
    assert capture(location, "s3cret", shown).returncode == 0
    rows = lit_rows(shown)
    assert all(r > 1000 for r in rows[:12]), rows
    assert all(r == 0 for r in rows[12:]), rows


def test_top_level_vnc_with_xend_default_password_and_vncviewer(make_host) -> None:  # type: ignore[no-untyped-def]
    host = make_host("(vncpasswd xendpw)\n")
    host.create("gfx2", vnc=1, vncdisplay=7)
    location = host.info("gfx2")["vnc"]
    assert location.endswith(":5907"), location
    assert capture(location, "wrong", host.dir / "bad.png").returncode != 0
    assert capture(location, "xendpw", host.dir / "ok.png").returncode == 0
    # xm vncviewer runs the viewer named by $VNCVIEWER; --autopass hands it the password
    viewer = host.dir / "viewer.sh"
    viewer.write_text(f"#!/bin/sh\necho \"$@\" > {host.dir}/args; cat > {host.dir}/stdin\n")
    viewer.chmod(0o755)
    host.env["VNCVIEWER"] = str(viewer)
    out = host.xm("vncviewer", "--autopass", "gfx2").stdout
    assert "invoking  vncviewer" in out
    assert (host.dir / "args").read_text().split() == ["-autopass", "127.0.0.1:7"]
    assert (host.dir / "stdin").read_text() == "xendpw\n"


def test_create_vncviewer_autopass_and_vncconsole(host: Host) -> None:
    viewer = host.dir / "viewer.sh"
    viewer.write_text("#!/bin/sh\nname=$(date +%s%N)\n"
                      f"echo \"$@\" > {host.dir}/args.$name; cat > {host.dir}/stdin.$name\n")
    viewer.chmod(0o755)
    host.env["VNCVIEWER"] = str(viewer)
    cfg = host.write_config("seen", vfb=["vnc=1,vncdisplay=11,vncpasswd=pw"])
    out = host.xm("create", "-p", "--vncviewer-autopass", str(cfg)).stdout
    assert "invoking  vncviewer -autopass 127.0.0.1:11" in out
    host.wait_for(lambda: list(host.dir.glob("stdin.*")) and
                  list(host.dir.glob("stdin.*"))[0].read_text() == "pw\n", 30, "the viewer")
    cfg = host.write_config("seen2", vfb=["vnc=1,vncdisplay=12"], vncconsole=1)
    out = host.xm("create", "-p", str(cfg)).stdout
    assert "invoking  vncviewer 127.0.0.1:12" in out
    host.wait_for(lambda: any(p.read_text().split() == ["127.0.0.1:12"]
                              for p in host.dir.glob("args.*")), 30, "the second viewer")


def test_screen_and_password_survive_save_and_restore(host: Host) -> None:
    host.create("kept", vfb=["vnc=1,vncpasswd=keep1"])
    host.console("kept").run("echo SAVED-SCREEN > /dev/tty1")
    image = host.dir / "kept.chk"
    host.xm("save", "kept", str(image))
    host.xm("restore", str(image))
    location = host.info("kept")["vnc"]
    assert capture(location, "wrong", host.dir / "bad.png").returncode != 0
    shot = host.dir / "restored.png"
    assert capture(location, "keep1", shot).returncode == 0
    assert sum(lit_rows(shot)) > 0  # the guest's screen came back with its memory
