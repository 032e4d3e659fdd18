"""The web console in a real browser (Debian's Chromium driven by Playwright), as a
person uses it: log in with the token `xend start` printed, see the domains, type
into a guest's serial console, watch its screen through noVNC, pause it with its
button; `xm list` and the guest agree."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Host
from playwright import sync_api as playwright_api

CHROMIUM = "/usr/bin/chromium"

# counts the lit pixels of noVNC's canvas (what the person sees of the guest's screen)
LIT_PIXELS = """(sel) => {
  const c = document.querySelector(sel + " canvas");
  if (!c || !c.width) return 0;
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 300) n++;
  return n;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


def web_host(make_host: Any) -> tuple[Host, str, str]:
    port = free_port()
    host: Host = make_host(f"(xend-http-server yes)\n(xend-port {port})\n"
                           "(xend-address 127.0.0.1)\n", start=False)
    out = host.xend("start").stdout
    match = re.search(r"Web console: (http://127\.0\.0\.1:\d+/)  access token: (\S+)", out)
    assert match, out
    token = (host.dir / "state" / "web-token").read_text().strip()
    assert match.group(2) == token
    assert (host.dir / "state" / "web-token").stat().st_mode & 0o077 == 0
    return host, match.group(1), token


def domid_column(host: Host, name: str) -> str:
    """The ID column of ``xm list <name>`` (``%-40s %5s``: blank when not running)."""
    return host.xm("list", name).stdout.splitlines()[1][41:46].strip()


def test_log_in_console_screen_and_pause(make_host: Any, browser: Any) -> None:
    host, url, token = web_host(make_host)
    host.create("web1", vfb=["vnc=1,vncpasswd=pw123"])
    host.console("web1").close()  # booted to its shell

    page = browser.new_page()
    # the save button asks for a file, destroy for a confirmation
    page.on("dialog", lambda d: d.accept("/nonexistent/dir/web1.chk")
            if d.type == "prompt" else d.accept())
    # without the token: the login page, and nothing else answers
    page.goto(url)
    assert page.url == url + "login"
    assert page.evaluate("fetch('/api/domains').then(r => r.status)") == 401
    page.fill("#token", "not-the-token")
    page.click("#login")
    page.wait_for_selector("#failed", state="visible")

    page.fill("#token", token)
    page.click("#login")
    row = page.wait_for_selector('tr[data-name="web1"][data-state="running"]')
    assert page.inner_text('tr[data-name="Domain-0"] .domid') == "0"
    assert row.inner_text().split("\t")[4] == "1"  # vCPUs

    # the serial console: type, and the guest's shell answers in the terminal
    page.click('tr[data-name="web1"] .act-console')
    page.wait_for_selector('#console-web1[data-role="writer"]')
    page.click("#console-web1 .xterm")
    page.keyboard.type("echo hel''lo\n")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#console-web1 .xterm-rows > div')]"
        ".some(r => r.textContent.trim() === 'hello')", timeout=30000)

    # the screen: the guest writes on its VGA console; noVNC's canvas shows it
    page.keyboard.type("for i in 1 2 3 4 5 6 7 8 9 10; do echo ###################; done"
                       " > /dev/tty1\n")
    page.click('tr[data-name="web1"] .act-screen')
    page.wait_for_selector('#screen-web1[data-connected="1"]', timeout=30000)
    page.wait_for_function(f"() => ({LIT_PIXELS})('#screen-web1') > 2000", timeout=30000)

    # pause with the button: xm list agrees; unpause again
    page.click('tr[data-name="web1"] .act-pause')
    page.wait_for_selector('tr[data-name="web1"][data-state="paused"]')
    assert page.inner_text('tr[data-name="web1"] .status') == "pause: done"
    line = host.xm("list", "web1").stdout.splitlines()[1]
    assert line.split()[4] == "--p---", line
    page.click('tr[data-name="web1"] .act-unpause')
    page.wait_for_selector('tr[data-name="web1"][data-state="running"]')
    assert "p" not in host.xm("list", "web1").stdout.splitlines()[1].split()[4]
    # an error shows where the person looks: saving to a directory that does not exist
    page.click('tr[data-name="web1"] .act-save')
    page.wait_for_selector('tr[data-name="web1"] .status.error')
    assert host.xm("list", "web1").stdout.splitlines()[1].split()[4] != "--p---"
    # a managed domain: started and destroyed with its buttons, listed halted after
    host.xm("new", str(host.write_config("web2")))
    page.click('tr[data-name="web2"][data-state="halted"] .act-start')
    page.wait_for_selector('tr[data-name="web2"][data-state="running"]', timeout=60000)
    assert domid_column(host, "web2").isdigit()
    page.click('tr[data-name="web2"] .act-destroy')
    page.wait_for_selector('tr[data-name="web2"][data-state="halted"]')
    assert domid_column(host, "web2") == ""

    # xend stops with consoles open: it closes them, and the page says so
    host.xend("stop")
    page.wait_for_selector("#console-web1 .role:text('(disconnected)')")
    page.wait_for_selector("#message:text('xend unreachable')")


def test_http_server_is_off_unless_configured(host: Host) -> None:
    assert not (host.dir / "state" / "web-token").exists()
    assert "web console on" not in (host.dir / "xend.log").read_text()
