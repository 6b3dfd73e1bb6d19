"""Shared per-user and per-address limits kept in the database, so every worker agrees:
rate events (login failures, registrations), usage slots that lapse when a worker dies
(parallel chat streams, exports, MCP SSE streams) and remembered keys."""
