"""The API key's text: `kelpie_<key id's 32 hex digits>_<43 base64url characters>`.

The id part is not secret: it finds the record without comparing secrets one by one. The
secret part carries 256 bits and is stored only as its SHA-256 digest (a fast hash is the
right one for a random secret: there is nothing to guess word by word).
"""

import base64
import hashlib
import re
import uuid
from typing import Final

from kelpie.schemas import API_KEY_PREFIX

KEY_TEXT_PREFIX: Final = "kelpie_"
SECRET_BYTES: Final = 32
_KEY_RE: Final = re.compile(rb"kelpie_([0-9a-f]{32})_([A-Za-z0-9_-]{43})")


def key_text(key_id: str, secret: bytes) -> str:
    assert len(secret) == SECRET_BYTES, "an API key's secret is 32 bytes"
    hex_id = uuid.UUID(key_id.removeprefix(f"{API_KEY_PREFIX}-")).hex
    encoded = base64.urlsafe_b64encode(secret).rstrip(b"=").decode()
    return f"{KEY_TEXT_PREFIX}{hex_id}_{encoded}"


def parse_key_text(text: bytes) -> tuple[str, bytes] | None:
    """The key id and secret part a presented key names; None if it is not shaped as one."""
    found = _KEY_RE.fullmatch(text)
    if found is None:
        return None
    return f"{API_KEY_PREFIX}-{uuid.UUID(found[1].decode())}", found[2]


def secret_digest(secret_part: bytes) -> str:
    """The stored form of a key's secret part (its text, as presented)."""
    return hashlib.sha256(secret_part).hexdigest()
