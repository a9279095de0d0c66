"""Kelpie's error tree. Every layer raises these; only `kelpie.api` maps them to HTTP.

    KelpieError
    ├── InvalidInput        the request is well-formed but a value is wrong       (400)
    │   └── ValidationFailed  the request breaks a field rule Letta reports as 422 (422)
    ├── NotFound            a referenced object does not exist                     (404)
    ├── Conflict            the request clashes with existing state                (409)
    ├── Expired             the object existed but is no longer kept              (410)
    ├── TooLarge            the request, or what it would store, is over a limit  (413)
    └── Unavailable         a dependency failed; retrying may succeed              (503)

Each error carries `detail`, the sentence the client sees.
"""


class KelpieError(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(KelpieError):
    pass


class ValidationFailed(InvalidInput):
    pass


class NotFound(KelpieError):
    pass


class Conflict(KelpieError):
    pass


class Expired(KelpieError):
    pass


class TooLarge(KelpieError):
    pass


class Unavailable(KelpieError):
    pass
