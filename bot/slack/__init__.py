"""The Slack side of the service: the Bolt app, its listeners and the error handler."""
