#!/usr/bin/env python3
"""Web console benchmark: how fast the page a person opens is, beside ``xm console``.

One run (about a minute, as root; ``make bench`` or ``python bench/bench_web.py``):

* **first paint**: ``page.goto(url)`` of a logged-in Chromium until the domain list
  shows the guest's row (Playwright timing from Python: navigation, the page's
  scripts including the xterm.js bundle, its first ``/api/domains``);
* **serial echo**: a key pressed in the browser's terminal until the guest's echo of
  it is in the terminal, timed inside the page (``performance.now()`` at keydown; a
  MutationObserver on xterm.js's rows sees the echo), so Playwright's own round trips
  are not counted;
* the **same echo through ``xm console``**: a byte written to the pty ``xm console``
  runs on until its echo is read back (the baseline: the relay, xm, a terminal).

Figures are median / min in ms over REPS runs; the ratio is web / xm console
(medians).  Everything started (xend, the guest, Chromium) is torn down at the end.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("DOM0_BIN", REPO / ".venv" / "bin"))
GUEST = Path(os.environ.get("DOM0_GUEST_DIR", REPO / "build" / "guest"))
CHROMIUM = "/usr/bin/chromium"
REPS = 20
KEY = "q"

# in the page: time from keydown to the echoed key appearing in the terminal
ECHO_PROBE = """async ([sel, key, n]) => {
  const rows = document.querySelector(sel + " .xterm-rows");
  const count = () => rows.textContent.split(key).length - 1;
  const out = [];
  for (let i = 0; i < n; i++) {
    const before = count();
    const seen = new Promise((resolve) => {
      const obs = new MutationObserver(() => {
        if (count() > before) { obs.disconnect(); resolve(performance.now()); }
      });
      obs.observe(rows, {childList: true, subtree: true, characterData: true});
    });
    const t0 = performance.now();
    const ta = document.querySelector(sel + " .xterm-helper-textarea");
    ta.dispatchEvent(new KeyboardEvent("keydown", {key, code: "KeyQ", keyCode: 81,
                                                   which: 81, bubbles: true}));
    ta.dispatchEvent(new KeyboardEvent("keypress", {key, charCode: 113, keyCode: 113,
                                                    which: 113, bubbles: true}));
    out.push((await seen) - t0);
    await new Promise((r) => setTimeout(r, 30));
  }
  return out;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fig(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f} / {min(values):6.1f}"


class Xend:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="d0bw-", dir="/tmp"))
        self.port = free_port()
        self.config = self.dir / "xend-config.sxp"
        self.config.write_text(f"""
(logfile {self.dir}/xend.log)
(xend-api-socket {self.dir}/xend.sock)
(xend-pid-file {self.dir}/xend.pid)
(xend-run-path {self.dir}/run)
(xend-log-path {self.dir}/log)
(xend-state-path {self.dir}/state)
(xend-domains-path {self.dir}/domains)
(qemu-accel tcg)
(xend-http-server yes)
(xend-port {self.port})
(xend-address 127.0.0.1)
""")
        self.env = dict(os.environ, XEND_CONFIG=str(self.config),
                        XM_SERVER=str(self.dir / "xend.sock"))
        out = self.run("xend", "start")
        match = re.search(r"(http://\S+)  access token: (\S+)", out)
        if not match:
            raise SystemExit(f"xend did not announce its web console: {out!r}")
        self.url, self.token = match.group(1), match.group(2)

    def run(self, *argv: str) -> str:
        proc = subprocess.run([str(BIN / argv[0]), *argv[1:]], env=self.env,
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)}: {proc.stderr}")
        return proc.stdout

    def create_guest(self, name: str) -> None:
        cfg = self.dir / f"{name}.cfg"
        cfg.write_text(f"name = {name!r}\nkernel = '{GUEST}/vmlinuz'\n"
                       f"ramdisk = '{GUEST}/initrd.img'\nmemory = 128\n"
                       "extra = 'quiet cryptomgr.notests'\nvfb = ['vnc=1']\n")
        self.run("xm", "create", "-q", str(cfg))

    def close(self) -> None:
        subprocess.run([str(BIN / "xm"), "destroy", "bench"], env=self.env,
                       capture_output=True, timeout=60)
        subprocess.run([str(BIN / "xend"), "stop"], env=self.env, capture_output=True,
                       timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


class XmConsole:
    """``xm console`` on a pty, as a person runs it."""

    def __init__(self, xend: Xend, name: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([str(BIN / "xm"), "console", name], env=xend.env,
                                     stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        self.seen = b""

    def expect(self, marker: bytes, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit(f"xm console: {marker!r} not seen: {self.seen[-300:]!r}")
            if select.select([self.master], [], [], left)[0]:
                self.seen += os.read(self.master, 65536)

    def wait_shell(self) -> None:
        for _ in range(60):
            os.write(self.master, b"echo rea''dy\n")
            try:
                self.expect(b"ready\r\n", timeout=2.0)
                return
            except SystemExit:
                continue
        raise SystemExit("the guest's shell never answered")

    def echo_latency(self, reps: int) -> list[float]:
        out = []
        for _ in range(reps):
            self.seen = b""
            t0 = time.perf_counter()
            os.write(self.master, KEY.encode())
            self.expect(KEY.encode())
            out.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.03)
        os.write(self.master, b"\x15")  # Ctrl-U: drop the typed line
        return out

    def close(self) -> None:
        os.write(self.master, b"\x1d")
        self.proc.wait(10)
        os.close(self.master)


def browser_figures(xend: Xend) -> tuple[list[float], list[float]]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page()
            page.goto(xend.url)
            page.fill("#token", xend.token)
            page.click("#login")
            page.wait_for_selector('tr[data-name="bench"]')
            paints = []
            for _ in range(REPS // 2):
                t0 = time.perf_counter()
                page.goto(xend.url)
                page.wait_for_selector('tr[data-name="bench"]')
                paints.append((time.perf_counter() - t0) * 1000)
            page.click('tr[data-name="bench"] .act-console')
            page.wait_for_selector('#console-bench[data-role="writer"]')
            echoes: list[float] = page.evaluate(ECHO_PROBE, ["#console-bench", KEY, REPS])
            page.keyboard.press("Control+U")
            return paints, echoes
        finally:
            browser.close()


def main() -> int:
    xend = Xend()
    try:
        xend.create_guest("bench")
        console = XmConsole(xend, "bench")
        console.wait_shell()
        console.close()
        paints, web_echo = browser_figures(xend)
        console = XmConsole(xend, "bench")
        console.wait_shell()
        xm_echo = console.echo_latency(REPS)
        console.close()
    finally:
        xend.close()
    print("web console (TCG guest, Chromium headless), ms median / min")
    print(f"  first paint (goto -> domain list)   {fig(paints)}   ({len(paints)} runs)")
    print(f"  serial echo, browser (xterm.js)     {fig(web_echo)}   ({len(web_echo)} keys)")
    print(f"  serial echo, xm console (pty)       {fig(xm_echo)}   ({len(xm_echo)} keys)")
    ratio = statistics.median(web_echo) / statistics.median(xm_echo)
    print(f"  echo ratio browser / xm console     {ratio:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
