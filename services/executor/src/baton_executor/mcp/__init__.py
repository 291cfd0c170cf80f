"""MCP servers as tool sources: a workspace registers a server, its tools join the catalogue as
``mcp.<server>.<tool>``, and workers call them over a pool of sessions per server."""
