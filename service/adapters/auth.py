"""Who is acting: the envelope's actor (development) or a verified signed token (production).

``trust`` believes the asserted ``actor`` — chosen explicitly, and the service says so loudly at
start-up. ``jwt`` verifies ``actor_token`` and ignores the asserted actor; a missing or bad token
is a ``forbidden`` rejection. A token is accepted only when all of these hold:

- its header names an allowed algorithm (EdDSA, ES256, RS256; HS256 only when a shared secret was
  explicitly allowed; never ``none``) and, for the asymmetric ones, a ``kid`` found in the JWKS
  whose key type is that very algorithm (no algorithm confusion: an RSA or EC key is never used as
  an HMAC secret, an Ed25519 key never verifies an RS256 signature);
- the signature verifies; ``exp``, ``iat``, ``iss``, ``aud``, ``sub`` and ``role`` are present;
  ``iss`` and ``aud`` are the configured ones; ``exp`` is not past and ``iat`` not in the future
  (both within the clock leeway); ``exp - iat`` is at most the maximum lifetime;
- ``sub`` is a UUID, ``role`` a known role, and a customer token carries ``customer_id``.

The JWKS (PyJWT's ``PyJWKSet`` over ``cryptography``) is read from a file or URL at start-up and
cached; an unknown ``kid`` re-reads it (key rotation), at most once per ``min_refresh_s`` so a
stream of made-up ``kid``\\ s cannot turn into a stream of fetches. See docs/decisions.md.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from jwt import PyJWK, PyJWKSet

from service.domain.errors import Forbidden
from service.domain.values import Actor, Role
from service.logging import get_logger

if TYPE_CHECKING:
    from service.settings import Settings

log = get_logger(__name__)

ASYMMETRIC_ALGORITHMS = frozenset({"EdDSA", "ES256", "RS256"})
DEFAULT_ISSUER = "tickets-dev"
DEFAULT_AUDIENCE = "ticket-service"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "role"]


class AuthConfigError(ValueError):
    """The authentication settings cannot work; the service refuses to start."""


class KeySet:
    """Public keys by ``kid`` from a JWKS file or URL, cached for ``cache_s`` seconds.

    ``get(kid)`` of an unknown kid re-reads the source (a rotated-in key), but never more often
    than every ``min_refresh_s`` seconds. A failed re-read keeps the keys already known.
    """

    def __init__(self, source: str, *, cache_s: float = 300.0, min_refresh_s: float = 30.0,
                 timeout_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self._cache_s = cache_s
        self._min_refresh_s = min_refresh_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._loaded_at = float("-inf")
        self._tried_at = float("-inf")
        self.refresh(strict=True)

    @property
    def kids(self) -> list[str]:
        return sorted(self._keys)

    def get(self, kid: str) -> PyJWK | None:
        now = self._clock()
        stale = now - self._loaded_at >= self._cache_s
        if (stale or kid not in self._keys) and now - self._tried_at >= self._min_refresh_s:
            self.refresh()
        return self._keys.get(kid)

    def refresh(self, *, strict: bool = False) -> None:
        self._tried_at = self._clock()
        try:
            keys = parse_jwks(self._read())
        except Exception as error:
            if strict:
                raise AuthConfigError(f"cannot load the JWKS from {self.source}: {error}") from error
            log.warning("JWKS refresh failed; keeping the known keys", source=self.source,
                        error=type(error).__name__)
            return
        if keys.keys() != self._keys.keys():
            log.info("JWKS loaded", source=self.source, kids=sorted(keys))
        self._keys = keys
        self._loaded_at = self._tried_at

    def _read(self) -> bytes:
        if self.source.startswith(("http://", "https://")):
            with urllib.request.urlopen(self.source, timeout=self._timeout_s) as response:  # noqa: S310
                return bytes(response.read(1 << 20))
        return Path(self.source.removeprefix("file://")).read_bytes()


def parse_jwks(raw: bytes | str | dict[str, Any]) -> dict[str, PyJWK]:
    """Usable public keys by kid; keys without a kid, or of a type we do not accept, are left out."""
    data = json.loads(raw) if isinstance(raw, bytes | str) else raw
    keys: dict[str, PyJWK] = {}
    for key in PyJWKSet.from_dict(data).keys:
        if key.key_id and key.algorithm_name in ASYMMETRIC_ALGORITHMS and not hasattr(key.key, "private_bytes"):
            keys[key.key_id] = key
    if not keys:
        raise ValueError("the JWKS holds no public EdDSA, ES256 or RS256 key with a kid")
    return keys


class ActorResolver:
    """``ActorResolver("trust")``; ``ActorResolver("jwt", keys=KeySet(...), issuer=..., audience=...)``.

    ``ActorResolver("jwt", secret)`` accepts HS256 tokens signed with ``secret`` — the explicit
    opt-in (the settings also require ``TICKETS_AUTH_JWT_ALLOW_HS256``).
    """

    def __init__(self, mode: str, secret: str = "", *, keys: KeySet | None = None,
                 issuer: str = DEFAULT_ISSUER, audience: str = DEFAULT_AUDIENCE, max_lifetime_s: int = 3600,
                 leeway_s: float = 30.0, gateway_accounts: Iterable[uuid.UUID] = (),
                 on_failure: Callable[[str], None] | None = None) -> None:
        if mode not in ("trust", "jwt"):
            raise AuthConfigError(f"unknown auth mode {mode!r}: choose jwt or trust")
        if mode == "jwt":
            if keys is None and not secret:
                raise AuthConfigError("TICKETS_AUTH_MODE=jwt needs TICKETS_AUTH_JWKS (a JWKS file or URL)")
            if secret and len(secret.encode()) < 32:
                raise AuthConfigError("TICKETS_AUTH_JWT_SECRET must be at least 32 bytes")
            if not issuer or not audience:
                raise AuthConfigError("TICKETS_AUTH_MODE=jwt needs TICKETS_AUTH_JWT_ISSUER and "
                                      "TICKETS_AUTH_JWT_AUDIENCE")
        self.mode = mode
        self._secret = secret
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._max_lifetime_s = max_lifetime_s
        self._leeway_s = leeway_s
        self._algorithms = (ASYMMETRIC_ALGORITHMS if keys is not None else frozenset()) | (
            {"HS256"} if secret else set())
        self.gateway_accounts = frozenset(gateway_accounts)
        self._on_failure = on_failure

    @classmethod
    def from_settings(cls, settings: Settings, on_failure: Callable[[str], None] | None = None) -> ActorResolver:
        mode = settings.auth_mode
        if mode is None:
            raise AuthConfigError("TICKETS_AUTH_MODE is not set: choose jwt (production) or trust "
                                  "(development only: actors are believed unverified)")
        gateways = settings.auth_gateway_accounts
        if mode == "trust":
            return cls("trust", gateway_accounts=gateways)
        secret = _secret_value(settings.auth_jwt_secret)
        if secret and not settings.auth_jwt_allow_hs256:
            raise AuthConfigError("TICKETS_AUTH_JWT_SECRET is set but HS256 is not allowed: set "
                                  "TICKETS_AUTH_JWT_ALLOW_HS256=true to accept shared-secret tokens")
        if settings.auth_jwt_allow_hs256 and not secret:
            raise AuthConfigError("TICKETS_AUTH_JWT_ALLOW_HS256=true needs TICKETS_AUTH_JWT_SECRET")
        keys = None
        if settings.auth_jwks:
            keys = KeySet(settings.auth_jwks, cache_s=settings.auth_jwks_cache_s,
                          min_refresh_s=settings.auth_jwks_min_refresh_s)
        return cls("jwt", secret, keys=keys, issuer=settings.auth_jwt_issuer, audience=settings.auth_jwt_audience,
                   max_lifetime_s=settings.auth_jwt_max_lifetime_s, leeway_s=settings.auth_jwt_leeway_s,
                   gateway_accounts=gateways, on_failure=on_failure)

    def describe(self) -> str:
        """One line for the start-up log (no secrets)."""
        if self.mode == "trust":
            return "trust"
        parts = [f"algorithms={','.join(sorted(self._algorithms))}", f"iss={self._issuer}", f"aud={self._audience}"]
        if self._keys is not None:
            parts.append(f"jwks={self._keys.source} kids={','.join(self._keys.kids)}")
        return "jwt " + " ".join(parts)

    def may_ingest_email(self, actor: Actor) -> bool:
        """A configured gateway account; with none configured, any ``system`` actor in trust mode
        (which believes the envelope anyway) and nobody in jwt mode."""
        if actor.role is not Role.SYSTEM:
            return False
        if self.gateway_accounts:
            return actor.user_id in self.gateway_accounts
        return self.mode == "trust"

    def authorise(self, actor: Actor, command_type: str) -> None:
        """Rules about *who* may send a command type at all, before any handler runs: only the
        email-ingest gateway's configured service accounts may send ``ticket.ingest_email``."""
        if command_type == "ticket.ingest_email" and actor.role is Role.SYSTEM and not self.may_ingest_email(actor):
            raise self._fail("not_a_gateway", "only the email-ingest gateway's service accounts may ingest email")

    def resolve(self, asserted: Any, token: str | None) -> Actor:
        """``asserted`` is the envelope's ticket_contracts Actor."""
        if self.mode == "trust":
            return Actor(asserted.user_id, Role(asserted.role.value), asserted.customer_id)
        if not token:
            raise self._fail("missing", "an actor_token is required")
        claims = self._verify(token)
        try:
            customer = claims.get("customer_id")
            actor = Actor(uuid.UUID(str(claims["sub"])), Role(claims["role"]),
                          uuid.UUID(str(customer)) if customer else None)
        except (ValueError, KeyError, TypeError) as error:
            raise self._fail("claims", "the actor_token's sub, role or customer_id is not valid") from error
        if actor.role is Role.CUSTOMER and actor.customer_id is None:
            raise self._fail("claims", "a customer token needs customer_id")
        return actor

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise self._fail("malformed", "the actor_token is not a JWT") from error
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise self._fail("algorithm", "the actor_token's algorithm is not accepted")
        key: Any
        if alg == "HS256":
            key = self._secret
        else:
            kid = header.get("kid")
            jwk = self._keys.get(kid) if self._keys is not None and isinstance(kid, str) else None
            if jwk is None:
                raise self._fail("unknown_key", "the actor_token's kid is not a known key")
            if jwk.algorithm_name != alg:
                raise self._fail("algorithm", "the actor_token's algorithm does not match its key")
            key = jwk.key
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[alg], audience=self._audience, issuer=self._issuer, leeway=self._leeway_s,
                options={"require": REQUIRED_CLAIMS, "verify_iat": True},
            )
        except jwt.ExpiredSignatureError as error:
            raise self._fail("expired", "the actor_token has expired") from error
        except jwt.MissingRequiredClaimError as error:
            raise self._fail("claims", f"the actor_token lacks the {error.claim} claim") from error
        except (jwt.InvalidIssuerError, jwt.InvalidAudienceError) as error:
            raise self._fail("issuer_audience", "the actor_token is not for this service") from error
        except jwt.InvalidSignatureError as error:
            raise self._fail("signature", "the actor_token's signature does not verify") from error
        except jwt.PyJWTError as error:
            raise self._fail("invalid", "the actor_token is not valid") from error
        exp, iat = claims["exp"], claims["iat"]
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise self._fail("claims", "the actor_token's exp and iat must be numbers")
        if exp - iat > self._max_lifetime_s:
            raise self._fail("lifetime", f"the actor_token lives longer than {self._max_lifetime_s} s")
        if iat > time.time() + self._leeway_s:
            raise self._fail("not_yet_valid", "the actor_token was issued in the future")
        return claims

    def _fail(self, reason: str, message: str) -> Forbidden:
        if self._on_failure is not None:
            self._on_failure(reason)
        return Forbidden(message)


def _secret_value(secret: Any) -> str:
    return str(secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret or "")


def issue_token(key: Any, actor: Actor, ttl_s: int = 3600, *, algorithm: str = "HS256", kid: str | None = None,
                issuer: str = DEFAULT_ISSUER, audience: str = DEFAULT_AUDIENCE,
                extra: dict[str, Any] | None = None) -> str:
    """For tests and tooling: sign a token the ``jwt`` mode accepts (``key``: an HS256 secret, or a
    private key object or PEM for EdDSA/ES256/RS256)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": str(actor.user_id), "role": actor.role.value, "iat": now, "exp": now + ttl_s,
                              "iss": issuer, "aud": audience}
    if actor.customer_id:
        claims["customer_id"] = str(actor.customer_id)
    claims.update(extra or {})
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm=algorithm,
                      headers={"kid": kid} if kid else None)


def algorithm_for(private_key: Any) -> str:
    """The JWS algorithm of a private key: Ed25519 → EdDSA, EC P-256 → ES256, RSA → RS256."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(private_key.curve, ec.SECP256R1):
        return "ES256"
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "RS256"
    raise ValueError("the key is not an Ed25519, EC P-256 or RSA private key")


def mint_token(private_pem: bytes, *, sub: uuid.UUID, role: str, customer_id: uuid.UUID | None = None,
               kid: str, issuer: str, audience: str, ttl_s: int = 900) -> str:
    """`tickets token`: a development token signed with a PEM private key."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(private_pem, password=None)
    return issue_token(key, Actor(sub, Role(role), customer_id), ttl_s, algorithm=algorithm_for(key), kid=kid,
                       issuer=issuer, audience=audience)
