"""A websocket JSON-RPC echo server built on the `websockets` package, for tether's tests.

Listens on 127.0.0.1 (a free port) and prints one JSON line per event on stdout:
  {"event": "listening", "port": N}
  {"event": "closed", "code": C, "reason": R, "received": N}   (one per connection)

Every request is answered with its params as the result; notifications are sent back as
they came. The reply goes out in the frame type of the request (text or binary), except:
  method "binary": the reply goes out as a binary frame;
  method "big":    the reply carries a string of params.size bytes;
  method "close":  after the reply, the server closes with code 1000, reason "bye".
The server exits once stdin closes.

    ws_echo_server.py [--require 'NAME: VALUE']...

With --require, a handshake without each of those headers (exact value) is refused with 401,
and the server prints {"event": "refused", "missing": NAME}.
"""

import argparse
import asyncio
import json
import sys
from http import HTTPStatus

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


def emit(**event):
    print(json.dumps(event), flush=True)


async def handle(ws):
    received = 0
    try:
        async for frame in ws:
            received += 1
            message = json.loads(frame)
            binary = isinstance(frame, bytes)
            if "id" not in message:
                await ws.send(frame)
                continue
            method = message.get("method")
            result = message.get("params")
            if method == "big":
                result = "x" * result["size"]
            reply = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result})
            if binary or method == "binary":
                await ws.send(reply.encode())
            else:
                await ws.send(reply)
            if method == "close":
                await ws.close(1000, "bye")
    except ConnectionClosed:
        pass
    emit(event="closed", code=ws.close_code, reason=ws.close_reason, received=received)


def checker(required):
    def check(connection, request):
        for name, value in required:
            if request.headers.get(name) != value:
                emit(event="refused", missing=name)
                return connection.respond(HTTPStatus.UNAUTHORIZED, f"{name} required\n")
        return None

    return check


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--require", action="append", default=[])
    args = parser.parse_args()
    required = [tuple(part.strip() for part in h.split(":", 1)) for h in args.require]
    async with serve(
        handle, "127.0.0.1", 0, max_size=None, process_request=checker(required)
    ) as server:
        emit(event="listening", port=server.sockets[0].getsockname()[1])
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main())
