"""Websocket clients built on the `websockets` package, for tether's tests: many at once
against one URL (a `tether bridge` over the built-in peer, which echoes).

    ws_clients.py URL SCENARIO CLIENTS [ARG]

Scenarios (each client runs the same one concurrently):
  exchange N   send N echo requests, alternating text and binary frames, pipelined; check
               every response arrives in order with its params; then close with 1000.
  exit CODE    ask the peer to exit with CODE, then wait for the server's Close.
  too_big N    send one text message of N bytes; wait for the server's Close.
Prints one JSON line per client, in client order:
  {"client": i, "responses": n, "close_code": c, "close_reason": r, "closed_by": "client"|"server"}
"""

import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def exchange(ws, n):
    async def send_all():
        for i in range(n):
            text = json.dumps({"jsonrpc": "2.0", "id": i, "method": "echo", "params": [i]})
            await ws.send(text.encode() if i % 2 else text)

    sender = asyncio.create_task(send_all())
    responses = 0
    for i in range(n):
        reply = json.loads(await ws.recv())
        if reply.get("id") != i or reply.get("result") != [i]:
            raise AssertionError(f"response {i}: {reply}")
        responses += 1
    await sender
    await ws.close(1000, "done")
    return responses, "client"


async def wait_close(ws):
    responses = 0
    try:
        while True:
            await ws.recv()
            responses += 1
    except ConnectionClosed:
        return responses, "server"


async def client(url, scenario, arg):
    async with connect(url, max_size=None, open_timeout=60, close_timeout=60) as ws:
        if scenario == "exchange":
            responses, closed_by = await exchange(ws, arg)
        elif scenario == "exit":
            request = {"jsonrpc": "2.0", "id": 1, "method": "exit", "params": {"code": arg}}
            await ws.send(json.dumps(request))
            responses, closed_by = await wait_close(ws)
        elif scenario == "too_big":
            await ws.send("x" * arg)
            responses, closed_by = await wait_close(ws)
        else:
            raise SystemExit(f"unknown scenario {scenario}")
        await ws.wait_closed()
        code = ws.close_code
        reason = ws.close_reason
    return {
        "responses": responses,
        "close_code": code,
        "close_reason": reason,
        "closed_by": closed_by,
    }


async def main():
    url, scenario, clients = sys.argv[1], sys.argv[2], int(sys.argv[3])
    arg = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    results = await asyncio.gather(*(client(url, scenario, arg) for _ in range(clients)))
    for i, result in enumerate(results):
        print(json.dumps({"client": i, **result}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
