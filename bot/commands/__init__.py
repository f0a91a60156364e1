"""``/hitl`` and the App Home: parsing, use cases and Block Kit answers. No Slack imports here
(the Bolt registration lives in :mod:`bot.slack.commands` and :mod:`bot.slack.home`)."""
