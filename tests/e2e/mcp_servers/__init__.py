"""MCP servers written with the SDK, run as processes by the MCP tests (stdio or streamable HTTP)."""
