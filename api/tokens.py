"""API tokens: HS256 JWTs carrying the caller's slug and roles, signed with a key derived from
the cluster secret (HKDF, so the Raft password itself never signs anything). Every peer holds
the secret, so every peer verifies every token."""

import time

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ISSUER = "registry-svc"
ALGORITHM = "HS256"
_KEY_INFO = b"registry-svc api token signing key v1"


class InvalidToken(Exception):
    """The token cannot be trusted; the message says why without repeating the token."""


def signing_key(cluster_secret):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO).derive(cluster_secret.encode())


def mint(key, slug, roles, ttl_seconds, now=None):
    issued = int(time.time() if now is None else now)
    claims = {"iss": ISSUER, "sub": slug, "roles": sorted(set(roles)), "iat": issued,
              "exp": issued + int(ttl_seconds)}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


# Tokens already verified, by (key, token): (caller, expiry). A client sends the same token with
# every request, and checking an HS256 signature and its claims each time cost 8 % of a peer's
# CPU under load. Bounded: cleared when full.
_verified = {}
VERIFIED_CACHE_SIZE = 4096


def verify(key, token, now=None):
    """The caller {"slug", "roles"} a valid token names."""
    now = time.time() if now is None else now
    known = _verified.get((key, token))
    if known is None or now >= known[1]:
        known = _verify_signed(key, token, now)
        if len(_verified) >= VERIFIED_CACHE_SIZE:
            _verified.clear()
        _verified[(key, token)] = known
    caller = known[0]
    # A copy: callers may change theirs; the remembered one stays as verified.
    return {"slug": caller["slug"], "roles": list(caller["roles"])}


def _verify_signed(key, token, now):
    try:
        # Expiry is checked below against `now`, the same clock the cache uses.
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], issuer=ISSUER,
                            options={"require": ["exp", "iat", "sub", "iss"], "verify_exp": False,
                                     "verify_iat": False})
    except jwt.InvalidSignatureError:
        raise InvalidToken("the token's signature does not match this cluster") from None
    except jwt.InvalidTokenError as error:
        raise InvalidToken(f"the token is not valid: {error}") from None
    roles = claims.get("roles")
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise InvalidToken("the token names no slug")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidToken("the token's roles are not a list of names")
    if not isinstance(claims["exp"], (int, float)) or isinstance(claims["exp"], bool):
        raise InvalidToken("the token's expiry is not a time")
    if now >= claims["exp"]:
        raise InvalidToken("the token has expired; get a new one")
    return {"slug": claims["sub"], "roles": sorted(set(roles))}, claims["exp"]
