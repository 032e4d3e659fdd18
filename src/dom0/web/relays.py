"""The browser's consoles over WebSockets: the serial console through xend's console
relay (the socket ``xm console`` uses), the screen through QEMU's VNC server.

The serial console has one writer at a time, as a terminal has one keyboard: the
first browser attached to a domain types, later ones watch, and when the writer
leaves the longest-waiting watcher takes over (it is told, in a text frame).  The
relay itself passes every byte the guest prints to every watcher."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

#: every console WebSocket open now (closed when xend stops)
OPEN: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
#: the most a WebSocket message from the browser may carry (keystrokes, pastes, RFB)
MAX_MESSAGE = 1024 * 1024


class SerialRelays:
    """Every browser attached to a serial console, per domain (UUID), writer first."""

    def __init__(self) -> None:
        self._attached: dict[str, list[web.WebSocketResponse]] = {}

    async def serve(self, request: web.Request, uuid: str, socket_path: str) -> \
            web.StreamResponse:
        try:
            reader, writer = await asyncio.open_unix_connection(socket_path)
        except OSError as exc:  # the domain stopped meanwhile
            return _refused(f"the domain's console is gone: {exc.strerror}")
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        OPEN.add(ws)
        queue = self._attached.setdefault(uuid, [])
        queue.append(ws)
        await ws.send_str(json.dumps({"role": "writer" if queue[0] is ws else "viewer"}))
        pump = asyncio.create_task(_to_browser(reader, ws))
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                if queue and queue[0] is ws:  # viewers' keys go nowhere
                    data = msg.data.encode() if msg.type == WSMsgType.TEXT else msg.data
                    writer.write(data)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            pump.cancel()
            writer.close()
            was_writer = bool(queue) and queue[0] is ws
            queue.remove(ws)
            if not queue:
                self._attached.pop(uuid, None)
            elif was_writer:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await queue[0].send_str(json.dumps({"role": "writer"}))
            await ws.close()
        return ws


def _refused(message: str) -> web.Response:
    return web.json_response({"error": message}, status=409)


async def _to_browser(reader: asyncio.StreamReader, ws: web.WebSocketResponse) -> None:
    try:
        while data := await reader.read(65536):
            await ws.send_bytes(data)
    except (ConnectionError, RuntimeError):
        pass
    finally:
        await ws.close()


async def vnc(request: web.Request, location: str) -> web.StreamResponse:
    """The browser's noVNC to QEMU's VNC server, byte for byte: QEMU's own VNC
    authentication (the domain's password) happens end to end."""
    host, port = location.rsplit(":", 1)
    try:
        reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    except OSError as exc:
        return _refused(f"the domain's VNC server is gone: {exc.strerror}")
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_MESSAGE,
                               protocols=("binary",))
    await ws.prepare(request)
    OPEN.add(ws)
    pump = asyncio.create_task(_to_browser(reader, ws))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                writer.write(msg.data)
                await writer.drain()
            elif msg.type != WSMsgType.TEXT:
                break
    except ConnectionError:
        pass
    finally:
        pump.cancel()
        writer.close()
        await ws.close()
    return ws
