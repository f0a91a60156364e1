"""The outbox's adapter side: the worker (:mod:`bot.outbox.loop`) and the deliveries it is given.

The worker imports no delivery: the composition root builds them (cards, notes, callbacks here;
App Home refreshes in :mod:`bot.slack.home`) and hands them to it, each naming the kinds it carries out.
"""
