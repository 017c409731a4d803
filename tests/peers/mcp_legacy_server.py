"""A legacy-only MCP server on stdio (revision 2025-06-18), for tether's translation tests.

It knows `initialize` and nothing of the 2026-07-28 revision: `server/discover` is an unknown
method (-32601), and any other request before `initialize` is refused (-32600). Tools:
  echo    returns its `message` argument
  ask     asks the client `roots/list` and returns what came back (the bridge's refusal)
  change  sends `notifications/tools/list_changed`, then returns
  wait    never answers (a client that leaves cancels it); it says it has started with a
          progress notification (when the request has a progress token), and once cancelled
          sends `notifications/tools/list_changed`, so that a test can watch for both
          instead of polling this server's log
  crash   exits at once with status 3, answering nothing
Every message it reads is appended, one JSON line each, to $TETHER_METHOD_LOG if set.
Standard library only.
"""

import json
import os
import sys

LOG = os.environ.get("TETHER_METHOD_LOG")
initialized = False
pending_ask = None  # the id of the tools/call waiting for roots/list's answer
waiting = set()  # the ids of the `wait` calls not cancelled yet


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def result(id, value):
    send({"jsonrpc": "2.0", "id": id, "result": value})


def error(id, code, text):
    send({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": text}})


def text(value):
    return {"content": [{"type": "text", "text": value}], "isError": False}


for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    message = json.loads(line)
    if LOG:
        with open(LOG, "a") as log:
            log.write(json.dumps(message) + "\n")
    method = message.get("method")
    id = message.get("id")
    if method is None:
        # An answer: the client's to our roots/list.
        if pending_ask is not None:
            result(pending_ask, text(json.dumps(message)))
            pending_ask = None
        continue
    if id is None:
        if method == "notifications/cancelled":
            cancelled = message.get("params", {}).get("requestId")
            if cancelled in waiting:
                waiting.discard(cancelled)
                send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        continue
    if method == "initialize":
        initialized = True
        result(id, {
            "protocolVersion": "2025-06-18",
            "capabilities": {"tools": {"listChanged": True}},
            "serverInfo": {"name": "legacy-only", "version": "1.0"},
            "instructions": "a server from before the stateless revision",
        })
    elif not initialized:
        if method == "server/discover":
            error(id, -32601, "Method not found")
        else:
            error(id, -32600, "not initialized")
    elif method == "tools/list":
        result(id, {"tools": [
            {"name": name, "inputSchema": {"type": "object"}}
            for name in ("echo", "ask", "change", "wait", "crash")
        ]})
    elif method == "tools/call":
        name = message["params"]["name"]
        if name == "echo":
            result(id, text(message["params"].get("arguments", {}).get("message", "")))
        elif name == "ask":
            pending_ask = id
            send({"jsonrpc": "2.0", "id": "roots-1", "method": "roots/list"})
        elif name == "wait":
            waiting.add(id)
            token = message["params"].get("_meta", {}).get("progressToken")
            if token is not None:
                send({
                    "jsonrpc": "2.0",
                    "method": "notifications/progress",
                    "params": {"progressToken": token, "progress": 0},
                })
        elif name == "crash":
            sys.exit(3)
        elif name == "change":
            send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
            result(id, text("changed"))
        else:
            error(id, -32602, "unknown tool")
    else:
        error(id, -32601, "Method not found")
