"""The per-channel pacer: turns spaced by its interval, kept for the item that was told to wait."""

from __future__ import annotations

from bot.outbox.pacing import FORGET_AFTER, Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_to_one_channel_is_spread_and_each_item_keeps_its_turn() -> None:
    clock = Clock()
    pacer = Pacer(2, now=clock)  # one post each half second
    assert pacer.wait(["C1"], 1) == 0
    assert pacer.wait(["C1"], 2) == 0.5
    assert pacer.wait(["C1"], 3) == 1.0
    assert pacer.wait(["C2"], 4) == 0  # another channel is not held
    assert pacer.wait(["C1"], 2) == 0.5  # back early: still waiting, for the same turn
    clock.now += 0.5
    assert pacer.wait(["C1"], 2) == 0  # its turn: it goes, without taking another
    assert pacer.wait(["C1"], 5) == 1.0  # the next new item queues behind item 3


def test_an_item_posting_to_several_channels_waits_for_its_latest_turn() -> None:
    clock = Clock()
    pacer = Pacer(1, now=clock)
    assert pacer.wait(["C1"], 1) == 0
    assert pacer.wait(["C1", "C2"], 2) == 1.0  # free in C2, its turn in C1 comes in a second
    clock.now += 1
    assert pacer.wait(["C1", "C2"], 2) == 0


def test_a_turn_nobody_came_back_for_is_forgotten() -> None:
    clock = Clock()
    pacer = Pacer(1, now=clock)
    pacer.wait(["C1"], 1)
    assert pacer.wait(["C1"], 2) == 1.0  # item 2 never comes back (another replica took it)
    clock.now += FORGET_AFTER + 2
    assert pacer.wait(["C1"], 3) == 0
    assert pacer._kept == {}
