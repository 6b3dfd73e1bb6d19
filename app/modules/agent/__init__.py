"""The advisor's engine, Reka: the agent loop that streams a model's answer and runs its
tool calls (`runner`), and the system prompt (`prompt`). It knows no domain: the chat
turn hands it the model, the tools (bound by `app.api.tools`) and the history; roadmap
generation uses the same streaming to ask for one forced tool call."""
