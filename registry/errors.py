"""Errors the domain reports: bad input before a command exists, and outcomes of apply."""


class ValidationError(ValueError):
    """A request cannot become a command; the message says what to fix."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


# Outcome codes carried in apply results. apply never raises: it returns one of these.
OK = "ok"
NOT_FOUND = "not_found"
CONFLICT = "conflict"
FORBIDDEN = "forbidden"
INVALID = "invalid"


def ok(**fields):
    return {"code": OK, **fields}


def failure(code, message):
    return {"code": code, "error": message}
