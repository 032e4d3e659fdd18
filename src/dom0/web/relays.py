"""The browser's consoles over WebSockets: the serial console through xend's console
relay (the same relay ``xm console`` uses, on its framed socket), the screen through
QEMU's VNC server.

The serial console has one writer at a time across ``xm console`` and browsers alike:
the relay (devices/console.py) decides who holds the keyboard and drops the others'
keys; this side passes the browser its role (a text frame ``{"role": ...}``) as the
relay announces it, and the guest's output as binary frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref

from aiohttp import WSMsgType, web

from dom0.model.consoleframes import FRAMED_SUFFIX, OUTPUT, ROLE, read_frame

log = logging.getLogger(__name__)

#: every console WebSocket open now (closed when xend stops)
OPEN: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
#: the most a WebSocket message from the browser may carry (keystrokes, pastes, RFB)
MAX_MESSAGE = 1024 * 1024


class SerialRelays:
    """Browsers attached to serial consoles: each a client of the domain's relay."""

    async def serve(self, request: web.Request, uuid: str, socket_path: str) -> \
            web.StreamResponse:
        try:
            reader, writer = await asyncio.open_unix_connection(socket_path + FRAMED_SUFFIX)
        except OSError as exc:  # the domain stopped meanwhile
            return _refused(f"the domain's console is gone: {exc.strerror}")
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        OPEN.add(ws)
        pump = asyncio.create_task(_frames_to_browser(reader, ws))
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                # a viewer's keys go to the relay too, which drops them
                writer.write(msg.data.encode() if msg.type == WSMsgType.TEXT else msg.data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            pump.cancel()
            writer.close()
            await ws.close()
        return ws


async def _frames_to_browser(reader: asyncio.StreamReader,
                             ws: web.WebSocketResponse) -> None:
    try:
        while (got := await read_frame(reader)) is not None:
            kind, payload = got
            if kind == OUTPUT:
                await ws.send_bytes(payload)
            elif kind == ROLE:
                await ws.send_str(json.dumps({"role": payload.decode()}))
    except (ConnectionError, RuntimeError, ValueError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.close()


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
