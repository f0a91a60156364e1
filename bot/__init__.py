"""The running service: HTTP server, Bolt listeners, agent API, cards, scheduler, CLI."""
