"""A modern MCP client (the Python SDK's `mcp.Client`), for tether's bridge tests.

    mcp_modern_client.py URL MODE

MODE is the SDK's: `auto` (server/discover first, falling back to initialize) or a modern
version such as `2026-07-28`. It lists the tools, calls `echo` ten times at once, and prints
one JSON line per observation, then {"event": "done"}.
"""

import json
import sys

import anyio
from mcp import Client


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


async def main(url, mode):
    async with Client(url, mode=mode) as client:
        emit("connected", protocol_version=client.protocol_version)
        tools = await client.list_tools()
        emit("tools", names=sorted(t.name for t in tools.tools))
        answers = {}

        async def call(n):
            result = await client.call_tool("echo", {"message": f"hello {n}"})
            answers[n] = result.content[0].text

        async with anyio.create_task_group() as group:
            for n in range(10):
                group.start_soon(call, n)
        emit("echoes", texts=[answers[n] for n in range(10)])
    emit("done")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
