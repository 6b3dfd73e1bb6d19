"""Conversations with the advisor: sessions, saved messages with their tool calls and
token usage, the per-user limits on turns and parallel streams, and the streaming turn
(`turn`) that runs the agent and saves what it said, even when the stream breaks."""
