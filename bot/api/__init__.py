"""The agent API (DESIGN §4): models, handlers, OpenAPI document."""
