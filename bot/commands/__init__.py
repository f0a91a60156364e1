"""``/hitl``: parsing, use cases and Block Kit answers. No Slack imports here (the Bolt
registration lives in :mod:`bot.slack.commands`; the App Home is :mod:`bot.home`)."""
