"""One client of a `tether bridge`, built on the `websockets` package (and, for plain HTTP, the
standard library's `urllib`), for tether's tests of the bridge's admission rules.

    ws_probe.py ws URL [--header 'NAME: VALUE']... [--origin ORIGIN]
                       [--call METHOD [PARAMS_JSON]] [--hold] [--wait-close]
    ws_probe.py get URL

`ws` opens a websocket to URL with the extra headers and Origin given. If the handshake is
refused it prints {"status": S, "body": B}. Otherwise it prints, once done,
{"status": 101, "local": "IP:PORT", "result": R, "close_code": C, "close_reason": T}:
  --call        sends one JSON-RPC request and records its result (or error);
  --hold        then prints {"event": "open", ...} at once and waits for its stdin to end;
  --wait-close  then sends nothing and waits for the server to close;
and finally it closes (if the server has not) and prints the summary.
`get` makes a plain HTTP GET and prints {"status": S, "body": B}.
"""

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


def emit(**fields):
    print(json.dumps(fields), flush=True)


async def ws(args):
    headers = [tuple(part.strip() for part in h.split(":", 1)) for h in args.header]
    try:
        async with connect(
            args.url, additional_headers=headers, origin=args.origin, open_timeout=60
        ) as conn:
            host, port = conn.local_address[:2]
            summary = {"status": 101, "local": f"{host}:{port}", "result": None}
            if args.call:
                method, *params = args.call
                request = {"jsonrpc": "2.0", "id": 1, "method": method}
                if params:
                    request["params"] = json.loads(params[0])
                await conn.send(json.dumps(request))
                reply = json.loads(await conn.recv())
                summary["result"] = reply.get("result", reply.get("error"))
            if args.hold:
                emit(event="open", **summary)
                await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
            if args.wait_close:
                try:
                    while True:
                        await conn.recv()
                except ConnectionClosed:
                    pass
        summary["close_code"] = conn.close_code
        summary["close_reason"] = conn.close_reason
        emit(**summary)
    except InvalidStatus as refused:
        emit(status=refused.response.status_code, body=refused.response.body.decode())


def get(args):
    try:
        with urllib.request.urlopen(args.url, timeout=60) as response:
            emit(status=response.status, body=response.read().decode())
    except urllib.error.HTTPError as refused:
        emit(status=refused.code, body=refused.read().decode())


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("ws")
    w.add_argument("url")
    w.add_argument("--header", action="append", default=[])
    w.add_argument("--origin")
    w.add_argument("--call", nargs="+")
    w.add_argument("--hold", action="store_true")
    w.add_argument("--wait-close", action="store_true")
    g = sub.add_parser("get")
    g.add_argument("url")
    args = parser.parse_args()
    if args.command == "ws":
        asyncio.run(ws(args))
    else:
        get(args)


if __name__ == "__main__":
    main()
