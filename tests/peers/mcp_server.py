"""A small MCP server on stdio, built with the official Python SDK, for tether's interop tests.

It offers one tool, `echo`, which returns its `message` argument.
"""

try:  # mcp 2.x
    from mcp.server.mcpserver import MCPServer as Server
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as Server

server = Server("tether-test")


@server.tool()
def echo(message: str) -> str:
    """Echoes back the message."""
    return message


if __name__ == "__main__":
    server.run("stdio")
