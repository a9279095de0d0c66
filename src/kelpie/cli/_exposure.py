"""The start-up warning for a server anyone on the network can use: bound to an address
other than loopback, with no password and no API key ever made (either turns auth on)."""

import ipaddress
from typing import Final

from kelpie.env import Config

LOOPBACK_NAMES: Final = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    """True for loopback addresses and `localhost`. Any other name is taken as reachable
    from elsewhere: it may resolve to any address."""
    name = host.strip().lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(config: Config, *, api_keys: bool = False) -> str | None:
    """What to warn of at start-up, or None when only this machine can reach the server
    or it asks for a password or an API key (`api_keys`: one was ever made)."""
    if config.server_password is not None or api_keys or is_loopback(config.host):
        return None
    return (
        f"serving on {config.host} without a password or API keys: anyone who can reach"
        " this address can read and change every agent. Create a key (kelpie keys create"
        " --admin), set KELPIE_SERVER_PASSWORD, or bind 127.0.0.1 (--host)."
    )
