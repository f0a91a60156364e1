"""The agent API (docs/api.md): models, handlers, OpenAPI document."""
