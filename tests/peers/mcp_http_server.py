"""An MCP server over Streamable HTTP, built with the official Python SDK, for the interop tests
of `tether connect http://...`.

    python mcp_http_server.py [--port N] [--token TOKEN] [--json-response]

Port 0 (the default) picks a free port. The first line on standard output is
`{"event":"listening","port":N}`; after it, one JSON line per HTTP request the server answered,
`{"event":"request","method":…,"path":…,"status":…,"session":…,"protocol":…,"last_event_id":…,
"mcp_method":…,"mcp_name":…,"minted":…}` (the request's `Mcp-Session-Id`, `MCP-Protocol-Version`,
`Last-Event-ID`, `Mcp-Method` and `Mcp-Name` headers, and the response's `Mcp-Session-Id`, or
null), written once the response starts, so that a test can wait for what the server saw instead of
sleeping. With `--token`, a request without `Authorization: Bearer TOKEN` gets 401 before it
reaches the SDK.

The SDK's server serves both eras on one endpoint: a request whose `MCP-Protocol-Version` header
names the stateless revision (2026-07-28) is served without a session, and refused with 400 and
-32020 when its mirrored headers disagree with its body.

Tools: `echo` (returns `message`), `météo` (a name that must travel as `=?base64?…?=` in
`Mcp-Name`; returns `city`), `steps` (reports progress `count` times on the call's own stream,
then, if `hold` is given, waits that many seconds, reporting `{"event":"cancelled","tool":"steps"}`
on standard output if the call is cancelled meanwhile, as closing a modern request's stream does), `chatty` (sends a log message and a progress notification
on the call's own stream, then returns `message`), `broadcast` (sends a log message with no
related request, which the SDK routes to the standalone GET stream), and `drop_stream` (closes
the standalone GET stream, so that the client must reconnect with `Last-Event-ID`), and
`interrupted` (closes its own call's stream before it logs and answers, so that the client must
resume it with `GET` and `Last-Event-ID`). Both need protocol revision 2025-11-25 or later.
"""

import argparse
import itertools
import json
import socket
import sys

import anyio
import uvicorn

try:  # mcp 2.x
    from mcp.server.mcpserver import Context
    from mcp.server.mcpserver import MCPServer as Server
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import Context
    from mcp.server.fastmcp import FastMCP as Server
from mcp.server.streamable_http import EventMessage, EventStore

server = Server("tether-http-test")


@server.tool()
def echo(message: str) -> str:
    """Echoes back the message."""
    return message


@server.tool(name="météo")
def weather(city: str) -> str:
    """Answers with the city: its name is not ASCII."""
    return f"sunny in {city}"


@server.tool()
async def steps(count: int, ctx: Context, hold: float = 0) -> str:
    """Reports progress `count` times, then holds the call for `hold` seconds."""
    for step in range(1, count + 1):
        await ctx.report_progress(step, count, f"step {step}")
    if hold:
        try:
            await anyio.sleep(hold)
        except anyio.get_cancelled_exc_class():
            emit({"event": "cancelled", "tool": "steps"})
            raise
    return f"{count} steps"


@server.tool()
async def chatty(message: str, ctx: Context) -> str:
    """Logs, reports progress, then echoes back the message."""
    await ctx.session.send_log_message(
        level="info", data=f"working on {message}", logger="chatty", related_request_id=ctx.request_id
    )
    await ctx.report_progress(1, 2, "halfway")
    return message


@server.tool()
async def broadcast(message: str, ctx: Context) -> str:
    """Sends `message` as a log message on the standalone GET stream."""
    await ctx.session.send_log_message(level="info", data=message, logger="broadcast", related_request_id=None)
    return "sent"


@server.tool()
async def interrupted(message: str, ctx: Context) -> str:
    """Closes its own SSE stream, then logs and echoes back the message: a resuming client
    receives both through GET with Last-Event-ID."""
    await ctx.close_sse_stream()
    await ctx.session.send_log_message(
        level="info", data=f"resumed {message}", logger="interrupted", related_request_id=ctx.request_id
    )
    return message


@server.tool()
async def drop_stream(ctx: Context) -> str:
    """Closes the standalone GET stream; a resuming client reconnects with Last-Event-ID."""
    await ctx.close_standalone_sse_stream()
    return "dropped"


class MemoryEventStore(EventStore):
    """Every event kept in memory, for resumption with Last-Event-ID."""

    def __init__(self):
        self.events = []  # (event_id, stream_id, message)
        self.ids = itertools.count(1)

    async def store_event(self, stream_id, message):
        event_id = str(next(self.ids))
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback):
        stream = next((s for (e, s, _) in self.events if e == last_event_id), None)
        if stream is None:
            return None
        after = False
        for event_id, stream_id, message in self.events:
            if event_id == last_event_id:
                after = True
            elif after and stream_id == stream and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream


def emit(value):
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def observed(app, token):
    """`app`, with each request reported on stdout and, with a token, checked first."""

    async def wrapper(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}

        async def report(message):
            if message["type"] == "http.response.start":
                sent = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", [])}
                emit(
                    {
                        "event": "request",
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": message["status"],
                        "session": headers.get("mcp-session-id"),
                        "protocol": headers.get("mcp-protocol-version"),
                        "last_event_id": headers.get("last-event-id"),
                        "mcp_method": headers.get("mcp-method"),
                        "mcp_name": headers.get("mcp-name"),
                        "minted": sent.get("mcp-session-id"),
                    }
                )
            await send(message)

        if token is not None and headers.get("authorization") != f"Bearer {token}":
            await report({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"missing or wrong bearer token"})
            return
        await app(scope, receive, report)

    return wrapper


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token")
    parser.add_argument("--json-response", action="store_true")
    args = parser.parse_args()
    app = server.streamable_http_app(json_response=args.json_response, event_store=MemoryEventStore())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(64)
    config = uvicorn.Config(observed(app, args.token), log_level="warning", lifespan="on")
    uvicorn_server = uvicorn.Server(config)
    emit({"event": "listening", "port": sock.getsockname()[1]})
    # Ends with standard input, so that a test that drops its end leaves no server behind.
    async with anyio.create_task_group() as group:

        async def serve():
            await uvicorn_server.serve(sockets=[sock])
            group.cancel_scope.cancel()

        async def watch_stdin():
            await anyio.to_thread.run_sync(sys.stdin.read)
            uvicorn_server.should_exit = True

        group.start_soon(serve)
        group.start_soon(watch_stdin)


if __name__ == "__main__":
    anyio.run(main)
