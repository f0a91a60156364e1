"""A local Slack for the sandbox and the end-to-end tests. Never imported by the production path.

emulator = create_emulator(EmulatorConfig(bot_url=...), seed)   # then: async with emulator: ...
AsyncWebClient(token=emulator.config.bot_token, base_url=emulator.api_url)
"""

from bot.sandbox.clock import Clock, Ids, ManualClock, SystemClock
from bot.sandbox.core import ApiCall, EmulatorConfig, PoolInfo, SampleRequest
from bot.sandbox.delivery import Delivery, sign
from bot.sandbox.faults import Fault, Faults, RateLimit
from bot.sandbox.interactions import InteractionError
from bot.sandbox.seed import (
    AGENT_OWNER,
    OUTSIDER,
    ChannelSeed,
    UsergroupSeed,
    UserSeed,
    WorkspaceSeed,
    seed_from_policies,
)
from bot.sandbox.server import Emulator, create_emulator

__all__ = [
    "AGENT_OWNER",
    "OUTSIDER",
    "ApiCall",
    "ChannelSeed",
    "Clock",
    "Delivery",
    "Emulator",
    "EmulatorConfig",
    "Fault",
    "Faults",
    "Ids",
    "InteractionError",
    "ManualClock",
    "PoolInfo",
    "RateLimit",
    "SampleRequest",
    "SystemClock",
    "UserSeed",
    "UsergroupSeed",
    "WorkspaceSeed",
    "create_emulator",
    "seed_from_policies",
    "sign",
]
