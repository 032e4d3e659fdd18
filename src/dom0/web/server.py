"""The web console's HTTP server (aiohttp): the login form, the page and its
scripts, a small JSON API for the page, and the consoles' WebSockets.

Everything but the login form needs a session (auth.py).  Requests that change
something must also carry the page's ``X-Dom0-Request`` header, which a form or
link on another site cannot send, and WebSockets must come from this origin."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from dom0.api.services import DomainView, Services
from dom0.errors import XendError
from dom0.web import relays, xtermbundle
from dom0.web.auth import COOKIE, Sessions

log = logging.getLogger(__name__)

STATIC = os.path.join(os.path.dirname(__file__), "static")
NOVNC = "/usr/share/novnc"
XTERM_CSS = "/usr/share/javascript/xterm/xterm.css"
#: a wrong token is answered this much later (the token is too long to guess anyway)
LOGIN_DELAY = 0.5
#: how long xend's stop waits for the page's requests to end (consoles are closed first)
SHUTDOWN_TIMEOUT = 3.0
#: what the page's requests carry (a cross-site form cannot set a header)
REQUEST_HEADER = "X-Dom0-Request"
PUBLIC = ("/login", "/static/style.css")

Action = Callable[[Services[Any], str, dict[str, Any]], Awaitable[Any]]


async def _start(s: Services[Any], dom: str, body: dict[str, Any]) -> None:
    await s.domains.start_managed(dom)


async def _shutdown(s: Services[Any], dom: str, body: dict[str, Any]) -> None:
    await s.domains.shutdown(dom, "poweroff")


async def _reboot(s: Services[Any], dom: str, body: dict[str, Any]) -> None:
    await s.domains.shutdown(dom, "reboot")


async def _save(s: Services[Any], dom: str, body: dict[str, Any]) -> None:
    path = body.get("file")
    if not isinstance(path, str) or not os.path.isabs(path):
        raise XendError("save needs an absolute file name on the host")
    await s.domains.save(dom, path, False)


#: the buttons of the page and what each does
ACTIONS: dict[str, Action] = {
    "start": _start,
    "pause": lambda s, dom, body: s.domains.pause(dom),
    "unpause": lambda s, dom, body: s.domains.unpause(dom),
    "shutdown": _shutdown,
    "reboot": _reboot,
    "destroy": lambda s, dom, body: s.domains.destroy(dom),
    "save": _save,
}


def domain_row(info: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of a domain (``xm list``'s columns, and its consoles)."""
    return {
        "name": info["name"],
        "domid": info.get("domid"),
        "state": info.get("state") or "",
        "power_state": info.get("power_state", ""),
        "memory": info.get("memory"),
        "vcpus": info.get("online_vcpus") or info.get("vcpus"),
        "uptime": info.get("uptime") or 0.0,
        "managed": bool(info.get("managed")),
        "console": bool(info.get("console")) and info.get("domid") != 0,
        "vnc": bool(info.get("vnc")),
    }


class WebConsole:
    def __init__(self, services: Services[Any], address: str, port: int, token: str) -> None:
        self.services = services
        self.address = address
        self.port = port
        self.sessions = Sessions(token)
        self.serial = relays.SerialRelays()
        self.runner: web.AppRunner | None = None
        self._xterm: bytes | None = None

    @property
    def url(self) -> str:
        host = self.address or "localhost"
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}/"

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._authenticated], client_max_size=64 * 1024)
        app.on_shutdown.append(self._close_consoles)
        r = app.router
        r.add_get("/login", self._login_page)
        r.add_post("/login", self._login)
        r.add_post("/logout", self._logout)
        r.add_get("/", self._index)
        r.add_get("/vendor/xterm.js", self._xterm_js)
        r.add_get("/vendor/xterm.css", self._xterm_css)
        r.add_static("/static/", STATIC)
        if os.path.isdir(NOVNC):
            r.add_static("/novnc/", NOVNC)
        r.add_get("/api/domains", self._domains)
        r.add_post("/api/domains/{dom}/{action}", self._action)
        r.add_get("/api/domains/{dom}/vnc", self._vnc_credentials)
        r.add_get("/ws/console/{dom}", self._ws_console)
        r.add_get("/ws/vnc/{dom}", self._ws_vnc)
        return app

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app(), handle_signals=False, access_log=log,
                                    shutdown_timeout=SHUTDOWN_TIMEOUT)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.address or None, self.port).start()

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    async def _close_consoles(self, app: web.Application) -> None:
        """Open consoles would otherwise hold xend's stop until they time out."""
        for ws in list(relays.OPEN):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"xend stopping")

    # ---- who may ---------------------------------------------------------------

    @web.middleware
    async def _authenticated(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC:
            return await handler(request)
        if not self.sessions.valid(request.cookies.get(COOKIE)):
            if request.method == "GET" and request.path == "/":
                raise web.HTTPSeeOther("/login")
            return web.json_response({"error": "log in first"}, status=401)
        if request.method == "POST" and request.headers.get(REQUEST_HEADER) != "1":
            return web.json_response({"error": f"missing {REQUEST_HEADER} header"},
                                     status=403)
        origin = request.headers.get("Origin")
        if request.path.startswith("/ws/") and origin is not None and \
                origin.split("://", 1)[-1] != request.host:
            return web.json_response({"error": "cross-origin WebSocket refused"}, status=403)
        return await handler(request)

    async def _login_page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(os.path.join(STATIC, "login.html"))

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = form.get("token")
        sid = self.sessions.login(token) if isinstance(token, str) else None
        if sid is None:
            log.warning("web console: failed login from %s", request.remote)
            await asyncio.sleep(LOGIN_DELAY)
            raise web.HTTPSeeOther("/login?failed=1")
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/")
        raise response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        self.sessions.logout(request.cookies.get(COOKIE))
        response = web.json_response({"result": None})
        response.del_cookie(COOKIE, path="/")
        return response

    # ---- the page -----------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(os.path.join(STATIC, "index.html"))

    async def _xterm_js(self, request: web.Request) -> web.Response:
        if self._xterm is None:
            self._xterm = await asyncio.to_thread(xtermbundle.bundle)
        return web.Response(body=self._xterm, content_type="application/javascript")

    async def _xterm_css(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(XTERM_CSS)

    # ---- the page's API -------------------------------------------------------------

    async def _domains(self, request: web.Request) -> web.Response:
        rows = [domain_row(self.services.host.dom0_info())]
        rows += [domain_row(d.info()) for d in self.services.domains.select()]
        return web.json_response({"result": rows})

    async def _action(self, request: web.Request) -> web.Response:
        action = ACTIONS.get(request.match_info["action"])
        if action is None:
            return web.json_response({"error": "no such action"}, status=404)
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return web.json_response({"error": "bad request body"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "bad request body"}, status=400)
        dom = request.match_info["dom"]
        try:
            await action(self.services, dom, body)
        except XendError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except Exception as exc:  # a bug must not take xend down; the page shows it
            log.exception("web console: %s %s", request.match_info["action"], dom)
            return web.json_response({"error": f"Internal error: {exc}"}, status=500)
        return web.json_response({"result": None})

    def _running(self, dom: str) -> DomainView:
        try:
            return self.services.domains.lookup(dom)
        except XendError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None

    async def _vnc_credentials(self, request: web.Request) -> web.Response:
        """The domain's VNC password, for the page's noVNC (as ``xm vncviewer
        --autopass`` hands it to a viewer): the session already proves the person
        may control the domain."""
        info = self._running(request.match_info["dom"]).info()
        if not info.get("vnc"):
            return web.json_response({"error": "the domain has no VNC console"}, status=404)
        return web.json_response({"result": {"password": vnc_password(self.services, info)}})

    async def _ws_console(self, request: web.Request) -> web.StreamResponse:
        info = self._running(request.match_info["dom"]).info()
        if not info.get("console"):
            return web.json_response({"error": "the domain is not running"}, status=409)
        return await self.serial.serve(request, info["uuid"], info["console"])

    async def _ws_vnc(self, request: web.Request) -> web.StreamResponse:
        info = self._running(request.match_info["dom"]).info()
        if not info.get("vnc"):
            return web.json_response({"error": "the domain has no VNC console"}, status=404)
        return await relays.vnc(request, info["vnc"])


def vnc_password(services: Services[Any], info: dict[str, Any]) -> str:
    """The domain's vfb password, else xend-config's ``vncpasswd``."""
    vfbs = (info.get("config") or {}).get("vfbs") or []
    if vfbs and "vncpasswd" in vfbs[0].get("options", {}):
        return str(vfbs[0]["options"]["vncpasswd"])
    return str(dict(services.config.items()).get("vncpasswd") or "")
