"""``python -m service.mcp``: the MCP server's entry point (the server itself is ``integrations/mcp.py``)."""

import sys

from .integrations.mcp import main

if __name__ == "__main__":
    sys.exit(main())
