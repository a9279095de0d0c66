"""The effect seam. Every effect core code has (time, randomness, ids, storage, models) is
reached through an `Env` built once at start-up: the real one by `kelpie.cli`, a simulated
one by `kelpie.sim`. Core code never reads the system clock or a global RNG.
"""

from kelpie.env._clock import Clock
from kelpie.env._config import LOG_LEVELS, SETTINGS, Config, ConfigError, Setting, read_config_file
from kelpie.env._entropy import Entropy
from kelpie.env._env import Env
from kelpie.env._system import SystemClock, system_entropy

__all__ = [
    "LOG_LEVELS",
    "SETTINGS",
    "Clock",
    "Config",
    "ConfigError",
    "Entropy",
    "Env",
    "Setting",
    "SystemClock",
    "read_config_file",
    "system_entropy",
]
