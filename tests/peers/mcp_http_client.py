"""An MCP client over Streamable HTTP, built on the official Python SDK, for tether's tests.

    mcp_http_client.py URL SCENARIO [--token TOKEN] [--origin ORIGIN] [--healthz URL]
                                    [--steps N] [--cut-after K]

It talks to URL (an MCP endpoint such as http://127.0.0.1:PORT/mcp) with the SDK's
`streamable_http_client` and `ClientSession`, and prints one JSON line per observation
(`{"event": ...}`), then `{"event": "done"}`; it checks nothing itself beyond what it needs to go
on, so the caller asserts on what it saw. An unexpected exception ends it with status 1.

Every HTTP exchange goes through a recording transport (wrapping httpx2's own), which is how
the script sees HTTP statuses the SDK does not surface, the session ids, the `Last-Event-ID`
it sends, and the raw server-sent events; the same transport cuts a response stream in the
`resume` scenario.

Scenarios:
  basic            initialize, tools/list, tools/call echo (and get-env, where the server has
                   it); leaving the client sends DELETE; a request with the ended session's id
                   afterwards
  two              two sessions at once, interleaved concurrent echo calls
  resume           a long-running tool with progress; its response stream is cut after K progress
                   notifications; the same request is then resumed with the last resumption token
                   (the SDK's GET with Last-Event-ID)
  unauthorized     initialize without the token
  foreign-origin   initialize with an `Origin` header (--origin, else http://evil.example)

With --origin, every request of every scenario carries that `Origin` header.
  unknown-session  a live session, then a request carrying a made-up Mcp-Session-Id
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import traceback
from typing import Any

import anyio
import httpx2
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ClientMessageMetadata

ECHO = "echo"
LONG_RUNNING = "trigger-long-running-operation"
FOREIGN_ORIGIN = "http://evil.example"
MADE_UP_SESSION = "made-up-session-0123456789abcdef"

# The end of one server-sent event: a blank line.
EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def parse_event(raw: bytes) -> dict[str, Any]:
    """One server-sent event's id and data (the data parsed as JSON where it is)."""
    event_id = None
    data: list[str] = []
    for line in raw.decode("utf-8", "replace").splitlines():
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            event_id = value
        elif field == "data":
            data.append(value)
    text = "\n".join(data)
    try:
        parsed: Any = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return {"id": event_id, "data": parsed}


def progress_of(event: dict[str, Any]) -> float | None:
    data = event["data"]
    if isinstance(data, dict) and data.get("method") == "notifications/progress":
        return data["params"]["progress"]
    return None


class Recorder(httpx2.AsyncBaseTransport):
    """httpx2's transport, with every exchange recorded; optionally cuts one response stream."""

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.exchanges: list[dict[str, Any]] = []
        # Replaces the Mcp-Session-Id of every request that carries one.
        self.session_override: str | None = None
        # Cut the SSE answer to the POST whose body contains `cut_marker` after that many
        # progress notifications.
        self.cut_marker: bytes | None = None
        self.cut_after = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self.session_override is not None and "mcp-session-id" in request.headers:
            request.headers["mcp-session-id"] = self.session_override
        body = request.content if request.method == "POST" else b""
        exchange: dict[str, Any] = {
            "method": request.method,
            "body": json.loads(body) if body else None,
            "session": request.headers.get("mcp-session-id"),
            "last_event_id": request.headers.get("last-event-id"),
            "events": [],
        }
        self.exchanges.append(exchange)
        response = await self.inner.handle_async_request(request)
        exchange["status"] = response.status_code
        exchange["content_type"] = response.headers.get("content-type")
        exchange["session_returned"] = response.headers.get("mcp-session-id")
        if not (exchange["content_type"] or "").startswith("text/event-stream"):
            return response
        cut = None
        if self.cut_marker is not None and self.cut_marker in body:
            cut = self.cut_after
            self.cut_marker = None
        return httpx2.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=Tee(response.stream, exchange, cut),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


class Tee(httpx2.AsyncByteStream):
    """A response stream passed on whole events at a time, each recorded; with `cut`, it fails
    (as the network would) right after the event that carries that many progress notifications,
    and closes the connection under it."""

    def __init__(self, inner: Any, exchange: dict[str, Any], cut: int | None) -> None:
        self.inner = inner
        self.exchange = exchange
        self.cut = cut

    async def __aiter__(self):  # type: ignore[override]
        pending = b""
        progress = 0
        async for chunk in self.inner:
            pending += chunk
            ready = b""
            while (end := EVENT_END.search(pending)) is not None:
                raw, pending = pending[: end.end()], pending[end.end() :]
                event = parse_event(raw)
                self.exchange["events"].append(event)
                ready += raw
                if progress_of(event) is not None:
                    progress += 1
                if self.cut is not None and progress >= self.cut:
                    yield ready
                    self.exchange["cut"] = True
                    await self.inner.aclose()
                    raise httpx2.SSEError("the test cut this stream")
            if ready:
                yield ready
        if pending:
            yield pending

    async def aclose(self) -> None:
        await self.inner.aclose()


def http_client(args: argparse.Namespace, recorder: Recorder, **headers: str) -> httpx2.AsyncClient:
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    if args.origin:
        headers.setdefault("Origin", args.origin)
    return httpx2.AsyncClient(
        transport=recorder,
        headers=headers,
        timeout=httpx2.Timeout(30.0, read=60.0),
    )


def text_of(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


def echoed(text: str, message: str) -> bool:
    """server-everything answers `Echo: MESSAGE`, the Python SDK server `MESSAGE`."""
    return text in (message, f"Echo: {message}")


def first_session(recorder: Recorder) -> str | None:
    return next((x["session_returned"] for x in recorder.exchanges if x["session_returned"]), None)


async def healthz(args: argparse.Namespace) -> None:
    if args.healthz:
        async with httpx2.AsyncClient() as client:
            response = await client.get(args.healthz)
            emit("healthz", status=response.status_code, body=response.json())


async def raw_post(args: argparse.Namespace, session: str, message: dict[str, Any]) -> httpx2.Response:
    """A POST the SDK would not send, with httpx2 alone."""
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Mcp-Session-Id": session,
    }
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    async with httpx2.AsyncClient() as client:
        return await client.post(args.url, headers=headers, json=message)


async def basic(args: argparse.Namespace) -> None:
    recorder = Recorder()
    async with http_client(args, recorder) as client:
        async with streamable_http_client(args.url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                emit(
                    "initialized",
                    server=init.server_info.name,
                    protocol=init.protocol_version,
                    session=first_session(recorder),
                )
                tools = await session.list_tools()
                names = sorted(t.name for t in tools.tools)
                emit("tools", names=names)
                result = await session.call_tool(ECHO, {"message": "hello from python"})
                text = text_of(result)
                emit("echo", text=text, ok=echoed(text, "hello from python"), is_error=result.is_error)
                if "get-env" in names:
                    env = json.loads(text_of(await session.call_tool("get-env", {})))
                    emit("env", client_addr=env.get("TETHER_CLIENT_ADDR"))
                await healthz(args)
    # Leaving the client ended the session with DELETE.
    deletes = [x for x in recorder.exchanges if x["method"] == "DELETE"]
    emit("terminated", statuses=[x["status"] for x in deletes], session=deletes[0]["session"] if deletes else None)
    ended = first_session(recorder)
    if ended is not None:
        response = await raw_post(args, ended, {"jsonrpc": "2.0", "id": 99, "method": "tools/list", "params": {}})
        emit("after_end", status=response.status_code)


async def two(args: argparse.Namespace) -> None:
    calls = 20
    recorders = [Recorder(), Recorder()]
    results: dict[tuple[int, int], str] = {}

    async def one(index: int, started: anyio.Event, go: anyio.Event, done: anyio.Event) -> None:
        async with http_client(args, recorders[index]) as client:
            async with streamable_http_client(args.url, http_client=client) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    started.set()
                    await go.wait()

                    async def call(j: int) -> None:
                        result = await session.call_tool(ECHO, {"message": f"session {index} call {j}"})
                        results[(index, j)] = text_of(result)

                    async with anyio.create_task_group() as calls_group:
                        for j in range(calls):
                            calls_group.start_soon(call, j)
                    done.set()
                    # Both sessions stay open until both are done.
                    await go_end.wait()

    go_end = anyio.Event()
    events = [(anyio.Event(), anyio.Event()) for _ in range(2)]
    go = anyio.Event()
    async with anyio.create_task_group() as group:
        for index, (started, done) in enumerate(events):
            group.start_soon(one, index, started, go, done)
        for started, _ in events:
            await started.wait()
        go.set()
        for _, done in events:
            await done.wait()
        await healthz(args)
        go_end.set()
    crossed = [
        {"session": i, "call": j, "text": text}
        for (i, j), text in sorted(results.items())
        if not echoed(text, f"session {i} call {j}")
    ]
    emit(
        "two",
        sessions=[first_session(r) for r in recorders],
        answers=len(results),
        crossed=crossed,
        terminated=[[x["status"] for x in r.exchanges if x["method"] == "DELETE"] for r in recorders],
    )


async def resume(args: argparse.Namespace) -> None:
    recorder = Recorder()
    tokens: list[str] = []
    progress: list[float] = []

    async def on_token(token: str) -> None:
        tokens.append(token)

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    request = types.CallToolRequest(
        params=types.CallToolRequestParams(
            name=LONG_RUNNING, arguments={"duration": args.steps * 0.4, "steps": args.steps}
        )
    )
    async with http_client(args, recorder) as client:
        async with streamable_http_client(args.url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                recorder.cut_marker = LONG_RUNNING.encode()
                recorder.cut_after = args.cut_after
                try:
                    await session.send_request(
                        request,
                        types.CallToolResult,
                        metadata=ClientMessageMetadata(on_resumption_token_update=on_token),
                        progress_callback=on_progress,
                    )
                    emit("not_cut")
                except MCPError as error:
                    emit("cut", error=str(error), progress=list(progress), token=tokens[-1] if tokens else None)
                if not tokens:
                    raise RuntimeError("no resumption token was recorded before the cut")
                token = tokens[-1]
                result = await session.send_request(
                    request,
                    types.CallToolResult,
                    metadata=ClientMessageMetadata(resumption_token=token, on_resumption_token_update=on_token),
                )
                posts = [x for x in recorder.exchanges if x["method"] == "POST" and LONG_RUNNING in json.dumps(x["body"])]
                gets = [x for x in recorder.exchanges if x["method"] == "GET" and x["last_event_id"]]
                before = [p for e in posts[0]["events"] if (p := progress_of(e)) is not None]
                after = [p for x in gets for e in x["events"] if (p := progress_of(e)) is not None]
                ids = [e["id"] for x in posts + gets for e in x["events"] if e["data"] is not None]
                emit(
                    "resumed",
                    text=text_of(result),
                    is_error=result.is_error,
                    token=token,
                    last_event_id_sent=[x["last_event_id"] for x in gets],
                    resume_statuses=[x["status"] for x in gets],
                    progress_before=before,
                    progress_after=after,
                    steps=args.steps,
                    event_ids=ids,
                    posts_cut=[x.get("cut", False) for x in posts],
                )


async def refused(args: argparse.Namespace, scenario: str, **headers: str) -> None:
    recorder = Recorder()
    async with http_client(args, recorder, **headers) as client:
        async with streamable_http_client(args.url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                try:
                    await session.initialize()
                    emit("initialized")
                except MCPError as error:
                    emit("refused", error=str(error))
    emit(
        scenario,
        statuses=[x["status"] for x in recorder.exchanges],
        methods=[x["method"] for x in recorder.exchanges],
    )


async def unknown_session(args: argparse.Namespace) -> None:
    recorder = Recorder()
    async with http_client(args, recorder) as client:
        async with streamable_http_client(args.url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                real = first_session(recorder)
                recorder.session_override = MADE_UP_SESSION
                try:
                    await session.list_tools()
                    emit("sdk_unknown_session", error=None)
                except MCPError as error:
                    emit("sdk_unknown_session", error=str(error))
                emit("sdk_unknown_session_status", status=recorder.exchanges[-1]["status"])
                recorder.session_override = None
                # The real session is unharmed.
                tools = await session.list_tools()
                emit("real_session", session=real, tools=len(tools.tools))
    response = await raw_post(args, MADE_UP_SESSION, {"jsonrpc": "2.0", "id": 1, "method": "ping"})
    emit("raw_unknown_session", status=response.status_code)
    emit("terminated", statuses=[x["status"] for x in recorder.exchanges if x["method"] == "DELETE"])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument(
        "scenario", choices=["basic", "two", "resume", "unauthorized", "foreign-origin", "unknown-session"]
    )
    parser.add_argument("--token", default="", help="sent as Authorization: Bearer TOKEN")
    parser.add_argument("--origin", default="", help="sent as the Origin header of every request")
    parser.add_argument("--healthz", default="", help="a health URL to read while sessions are open")
    parser.add_argument("--steps", type=int, default=5, help="resume: the tool's progress steps")
    parser.add_argument("--cut-after", type=int, default=2, help="resume: progress notifications before the cut")
    args = parser.parse_args()
    match args.scenario:
        case "basic":
            await basic(args)
        case "two":
            await two(args)
        case "resume":
            await resume(args)
        case "unauthorized":
            args.token = ""
            await refused(args, "unauthorized")
        case "foreign-origin":
            await refused(args, "foreign-origin", Origin=args.origin or FOREIGN_ORIGIN)
        case "unknown-session":
            await unknown_session(args)
    emit("done")


if __name__ == "__main__":
    try:
        anyio.run(main)
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
