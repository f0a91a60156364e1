"""The App Home: each reviewer's own queue across pools and tenants, and whose Home to refresh.

Use cases and a pure Block Kit builder; no Slack here (the Bolt listener and the outbox delivery
live in :mod:`bot.slack.home`).
"""
