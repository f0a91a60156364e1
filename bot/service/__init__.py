"""Use cases of the service (agents ask, reviewers click); no Slack or HTTP imports."""
