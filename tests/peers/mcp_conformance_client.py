"""An MCP client for the official conformance suite's client scenarios
(@modelcontextprotocol/conformance, `conformance client --command ...`), with `tether connect`
as its transport: this script is the application, tether carries every message.

    python3 mcp_conformance_client.py TETHER [TETHER_ARGS...] URL

The suite appends the URL of its test server and names the scenario in
$MCP_CONFORMANCE_SCENARIO. The script runs `TETHER connect [TETHER_ARGS...] URL`, writes one
JSON-RPC message per line to its standard input and reads its events (`{"event": "message",
...}`) from its standard output. It does what an ordinary client application does, the same for
every scenario: initialize (declaring sampling and elicitation), send `initialized`, list the
tools and call each one (`add_numbers` with a=5, b=3), answering the server's requests on the
way (an elicitation is accepted with the defaults its schema gives, which is what
`elicitation-sep1034-client-defaults` checks), then close standard input and wait for tether to
end. Transport behaviour (the session id, the protocol version header, resuming a cut stream
after the server's `retry:` for `sse-retry`) is tether's alone.

It exits with 0 once tether has ended cleanly, else 1 with the reason on standard error.
"""

import json
import os
import queue
import subprocess
import sys
import threading

PROTOCOL = "2025-11-25"
TIMEOUT = 20


def main():
    tether, args, url = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    child = subprocess.Popen(
        [tether, "connect", *args, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    events = queue.Queue()

    def read():
        for line in child.stdout:
            events.put(json.loads(line))
        events.put(None)

    threading.Thread(target=read, daemon=True).start()
    client = Client(child, events)
    try:
        client.run()
    except Failure as failure:
        print(f"{scenario}: {failure}", file=sys.stderr)
        child.kill()
        child.wait()
        return 1
    child.stdin.close()
    ended = client.until_end()
    status = child.wait(timeout=TIMEOUT)
    if ended.get("reason") is not None or status != 0:
        print(f"{scenario}: tether ended with {ended} and status {status}", file=sys.stderr)
        return 1
    return 0


class Failure(Exception):
    pass


class Client:
    def __init__(self, child, events):
        self.child = child
        self.events = events
        self.next_id = 0

    def send(self, message):
        message = {"jsonrpc": "2.0", **message}
        self.child.stdin.write(json.dumps(message) + "\n")
        self.child.stdin.flush()

    def request(self, method, params):
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        return self.answer(self.next_id)

    def next_event(self):
        try:
            event = self.events.get(timeout=TIMEOUT)
        except queue.Empty:
            raise Failure("no event from tether in time")
        if event is None:
            raise Failure("tether ended its output")
        return event

    def answer(self, id):
        """The result of request `id`, answering the server's own requests meanwhile."""
        while True:
            event = self.next_event()
            if event["event"] == "disconnected":
                raise Failure(f"disconnected before the answer to {id}: {event}")
            if event["event"] == "malformed":
                # What the server sent is no JSON-RPC message (a test server answering a
                # notification with `{"result": {}}`, say): tether says so, and goes on.
                print(f"malformed: {event.get('reason')}", file=sys.stderr)
                continue
            if event["event"] != "message":
                raise Failure(f"unexpected event: {event}")
            message = event["message"]
            if "method" in message and "id" in message:
                self.serve(message)
            elif "method" not in message and message.get("id") == id:
                if "error" in message:
                    raise Failure(f"request {id} failed: {message['error']}")
                return message["result"]

    def serve(self, request):
        method, params = request["method"], request.get("params") or {}
        if method == "elicitation/create":
            properties = (params.get("requestedSchema") or {}).get("properties") or {}
            content = {k: v["default"] for k, v in properties.items() if "default" in v}
            result = {"action": "accept", "content": content}
        elif method == "sampling/createMessage":
            result = {
                "role": "assistant",
                "content": {"type": "text", "text": "A sampled answer."},
                "model": "conformance",
                "stopReason": "endTurn",
            }
        elif method == "roots/list":
            result = {"roots": []}
        elif method == "ping":
            result = {}
        else:
            self.send({"id": request["id"], "error": {"code": -32601, "message": "Method not found"}})
            return
        self.send({"id": request["id"], "result": result})

    def until_end(self):
        while True:
            event = self.next_event()
            if event["event"] == "disconnected":
                return event
            if event["event"] == "message" and "method" in event["message"] and "id" in event["message"]:
                self.serve(event["message"])

    def run(self):
        self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL,
                "capabilities": {"sampling": {}, "elicitation": {}},
                "clientInfo": {"name": "tether-conformance-client", "version": "1.0.0"},
            },
        )
        self.send({"method": "notifications/initialized"})
        tools = self.request("tools/list", {}).get("tools", [])
        for tool in tools:
            arguments = {"a": 5, "b": 3} if tool["name"] == "add_numbers" else {}
            self.request("tools/call", {"name": tool["name"], "arguments": arguments})


if __name__ == "__main__":
    sys.exit(main())
