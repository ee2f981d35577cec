"""The running service: ``FaqService`` holds one FAQ's engine, its reloads, its query log and review loop, and its
use cases (search with the token budget and the search slots, batch, feedback, entries, health, review); the HTTP
routes and the MCP server are thin adapters over it. ``models`` are the requests and responses they share."""
