"""The agent API (the README's *Agent API*): models, handlers, OpenAPI document."""
