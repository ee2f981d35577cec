"""Ways in for other programs: the MCP server for LLM assistants and the standard-library Python client."""
