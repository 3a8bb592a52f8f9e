"""Actor resolution: trust the envelope (development) or verify a signed token against a JWKS.

Every rejection the ``jwt`` mode makes has its own test: no token, garbage, no ``exp``/``iat``/
``iss``/``aud``, wrong issuer or audience, expired, issued in the future, too long a lifetime,
unknown ``kid``, a key of another type than the header's algorithm, HS256 signed with the public
key (algorithm confusion), ``alg: none``, HS256 when it is not allowed; and key rotation.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from ticket_contracts import Actor as ContractActor

from service.adapters.auth import ActorResolver, AuthConfigError, KeySet, issue_token, mint_token
from service.domain.errors import Forbidden
from service.domain.values import Actor, Role
from service.settings import load_settings

SECRET = "s3cret-s3cret-s3cret-s3cret-s3cret!"
ISSUER, AUDIENCE = "https://id.example.test", "ticket-service"
ASSERTED = ContractActor(user_id=uuid.uuid4(), role="admin")
AGENT = Actor(uuid.uuid4(), Role.AGENT)


def public_jwk(private: Any, kid: str) -> dict[str, Any]:
    algorithm = {ed25519.Ed25519PrivateKey: (OKPAlgorithm, "EdDSA"), rsa.RSAPrivateKey: (RSAAlgorithm, "RS256"),
                 ec.EllipticCurvePrivateKey: (ECAlgorithm, "ES256")}
    for kind, (codec, alg) in algorithm.items():
        if isinstance(private, kind):
            return json.loads(codec.to_jwk(private.public_key())) | {"kid": kid, "alg": alg, "use": "sig"}
    raise AssertionError(private)


class Issuer:
    """An identity provider: private keys, their JWKS written to a file, tokens."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.keys: dict[str, Any] = {}

    def add(self, kid: str, private: Any) -> None:
        self.keys[kid] = private
        self.write()

    def drop(self, kid: str) -> None:
        del self.keys[kid]
        self.write()

    def write(self) -> None:
        self.path.write_text(json.dumps({"keys": [public_jwk(k, kid) for kid, k in self.keys.items()]}))

    def token(self, kid: str, actor: Actor = AGENT, *, alg: str | None = None, ttl_s: int = 600,
              **claims: Any) -> str:
        key = self.keys[kid]
        alg = alg or {ed25519.Ed25519PrivateKey: "EdDSA", rsa.RSAPrivateKey: "RS256"}.get(
            next(t for t in (ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)
                 if isinstance(key, t)), "ES256")
        return issue_token(key, actor, ttl_s, algorithm=alg, kid=kid, issuer=claims.pop("iss", ISSUER),
                           audience=claims.pop("aud", AUDIENCE), extra=claims)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def issuer(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Issuer:
    idp = Issuer(tmp_path / "jwks.json")
    idp.add("ed-1", ed25519.Ed25519PrivateKey.generate())
    idp.add("ec-1", ec.generate_private_key(ec.SECP256R1()))
    idp.add("rsa-1", rsa_key)
    return idp


def resolver(issuer: Issuer, **options: Any) -> ActorResolver:
    keys = KeySet(str(issuer.path), min_refresh_s=options.pop("min_refresh_s", 0.0),
                  clock=options.pop("clock", time.monotonic))
    return ActorResolver("jwt", options.pop("secret", ""), keys=keys, issuer=ISSUER, audience=AUDIENCE,
                         max_lifetime_s=options.pop("max_lifetime_s", 3600), leeway_s=5, **options)


def refuses(resolver: ActorResolver, token: str | None, match: str) -> None:
    with pytest.raises(Forbidden, match=match):
        resolver.resolve(ASSERTED, token)


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{part(header)}.{part(claims)}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def good_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": str(AGENT.user_id), "role": "agent", "iat": now, "exp": now + 600, "iss": ISSUER,
              "aud": AUDIENCE}
    return {k: v for k, v in (claims | changes).items() if v is not None}


# --- trust ------------------------------------------------------------------------------------------

def test_trust_mode_takes_the_envelope_actor() -> None:
    actor = ActorResolver("trust").resolve(ASSERTED, None)
    assert actor == Actor(ASSERTED.user_id, Role.ADMIN, None)


def test_the_auth_mode_must_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKETS_AUTH_MODE", raising=False)
    with pytest.raises(AuthConfigError, match="TICKETS_AUTH_MODE is not set"):
        ActorResolver.from_settings(load_settings())


# --- jwt: accepted ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kid", ["ed-1", "ec-1", "rsa-1"], ids=["EdDSA", "ES256", "RS256"])
def test_each_asymmetric_algorithm_is_accepted_and_the_asserted_role_ignored(issuer: Issuer, kid: str) -> None:
    customer = Actor(uuid.uuid4(), Role.CUSTOMER, uuid.uuid4())
    assert resolver(issuer).resolve(ASSERTED, issuer.token(kid, customer)) == customer


def test_an_audience_list_containing_ours_is_accepted(issuer: Issuer) -> None:
    assert resolver(issuer).resolve(ASSERTED, issuer.token("ed-1", aud=["other", AUDIENCE])) == AGENT


def test_small_clock_skew_is_tolerated(issuer: Issuer) -> None:
    now = int(time.time())
    token = issuer.token("ed-1", iat=now + 3, exp=now - 2 + 600)
    assert resolver(issuer).resolve(ASSERTED, token) == AGENT
    assert resolver(issuer).resolve(ASSERTED, issuer.token("ed-1", iat=now - 600, exp=now - 3)) == AGENT


# --- jwt: every rejection ---------------------------------------------------------------------------

@pytest.mark.parametrize("token", [None, ""], ids=["missing", "empty"])
def test_no_token(issuer: Issuer, token: str | None) -> None:
    refuses(resolver(issuer), token, "required")


def test_garbage(issuer: Issuer) -> None:
    refuses(resolver(issuer), "not-a-jwt", "not a JWT")


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud", "sub", "role"])
def test_a_required_claim_missing(issuer: Issuer, claim: str) -> None:
    refuses(resolver(issuer), issuer.token("ed-1", **{claim: None}), f"lacks the {claim} claim")


def test_wrong_issuer(issuer: Issuer) -> None:
    refuses(resolver(issuer), issuer.token("ed-1", iss="https://evil.example.test"), "not for this service")


@pytest.mark.parametrize("aud", ["another-service", ["another-service"]])
def test_wrong_audience(issuer: Issuer, aud: Any) -> None:
    refuses(resolver(issuer), issuer.token("ed-1", aud=aud), "not for this service")


def test_expired_beyond_the_leeway(issuer: Issuer) -> None:
    now = int(time.time())
    refuses(resolver(issuer), issuer.token("ed-1", iat=now - 600, exp=now - 10), "expired")


def test_issued_in_the_future(issuer: Issuer) -> None:
    now = int(time.time())
    refuses(resolver(issuer), issuer.token("ed-1", iat=now + 60, exp=now + 600), "not valid|future")


def test_a_lifetime_over_the_maximum(issuer: Issuer) -> None:
    r = resolver(issuer, max_lifetime_s=900)
    assert r.resolve(ASSERTED, issuer.token("ed-1", ttl_s=900)) == AGENT
    refuses(r, issuer.token("ed-1", ttl_s=901), "longer than 900 s")
    refuses(r, issuer.token("ed-1", ttl_s=10 * 365 * 86400), "longer than 900 s")


def test_an_unknown_kid(issuer: Issuer) -> None:
    stranger = Issuer(issuer.path.with_name("other.json"))
    stranger.add("ed-9", ed25519.Ed25519PrivateKey.generate())
    refuses(resolver(issuer), stranger.token("ed-9"), "not a known key")


def test_no_kid(issuer: Issuer) -> None:
    token = jwt.encode(good_claims(), issuer.keys["ed-1"], algorithm="EdDSA")
    refuses(resolver(issuer), token, "not a known key")


def test_a_known_kid_with_someone_elses_signature(issuer: Issuer) -> None:
    forged = issue_token(ed25519.Ed25519PrivateKey.generate(), AGENT, algorithm="EdDSA", kid="ed-1",
                         issuer=ISSUER, audience=AUDIENCE)
    refuses(resolver(issuer), forged, "signature")


def test_a_header_algorithm_other_than_the_keys(issuer: Issuer) -> None:
    """An ES256 token naming the RSA key's kid: refused before any verification."""
    token = jwt.encode(good_claims(), issuer.keys["ec-1"], algorithm="ES256", headers={"kid": "rsa-1"})
    refuses(resolver(issuer), token, "does not match its key")


@pytest.mark.parametrize("kid", ["rsa-1", "ed-1", "ec-1"])
def test_algorithm_confusion_hs256_signed_with_the_public_key(issuer: Issuer, kid: str) -> None:
    """The classic attack: HMAC over the token with the issuer's *public* key as the secret."""
    import hashlib
    import hmac

    public_pem = issuer.keys[kid].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    head, body, _ = unsigned({"alg": "HS256", "typ": "JWT", "kid": kid}, good_claims(role="admin")).split(".")
    signature = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    token = f"{head}.{body}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    refuses(resolver(issuer), token, "algorithm is not accepted")
    # Even with HS256 allowed, the HMAC key is the configured secret, never a JWKS key.
    refuses(resolver(issuer, secret=SECRET), token, "signature")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none(issuer: Issuer, alg: str) -> None:
    token = unsigned({"alg": alg, "typ": "JWT", "kid": "ed-1"}, good_claims(role="admin"))
    refuses(resolver(issuer), token, "algorithm is not accepted")
    refuses(resolver(issuer, secret=SECRET), token, "algorithm is not accepted")


@pytest.mark.parametrize("alg", ["PS256", "ES384", "HS512"])
def test_other_algorithms(issuer: Issuer, alg: str) -> None:
    token = unsigned({"alg": alg, "typ": "JWT", "kid": "rsa-1"}, good_claims(), b"x" * 64)
    refuses(resolver(issuer), token, "algorithm is not accepted")


def test_hs256_is_refused_unless_allowed(issuer: Issuer) -> None:
    token = issue_token(SECRET, AGENT, 600, issuer=ISSUER, audience=AUDIENCE)
    refuses(resolver(issuer), token, "algorithm is not accepted")
    assert resolver(issuer, secret=SECRET).resolve(ASSERTED, token) == AGENT


@pytest.mark.parametrize(("claims", "match"), [
    ({"sub": "not-a-uuid"}, "sub, role"), ({"role": "superuser"}, "sub, role"),
    ({"role": "customer"}, "needs customer_id"), ({"exp": "tomorrow"}, "not valid|numbers"),
])
def test_bad_actor_claims(issuer: Issuer, claims: dict[str, Any], match: str) -> None:
    token = jwt.encode(good_claims(**claims), issuer.keys["ed-1"], algorithm="EdDSA", headers={"kid": "ed-1"})
    refuses(resolver(issuer), token, match)


def test_every_failure_is_counted_by_reason(issuer: Issuer) -> None:
    seen: list[str] = []
    r = resolver(issuer, on_failure=seen.append)
    for token in (None, "junk", issuer.token("ed-1", iss="x"), issuer.token("ed-1", ttl_s=99999)):
        with pytest.raises(Forbidden):
            r.resolve(ASSERTED, token)
    assert seen == ["missing", "malformed", "issuer_audience", "lifetime"]


# --- key rotation and the JWKS cache ----------------------------------------------------------------

def test_rotation_a_new_kid_is_fetched_and_a_removed_one_refused(issuer: Issuer) -> None:
    r = resolver(issuer)
    assert r.resolve(ASSERTED, issuer.token("ed-1")) == AGENT
    issuer.add("ed-2", ed25519.Ed25519PrivateKey.generate())  # the issuer rotates in a new key
    assert r.resolve(ASSERTED, issuer.token("ed-2")) == AGENT
    old = issuer.token("ed-1")
    issuer.drop("ed-1")  # ... and retires the old one: cached until the next read
    clock = {"now": 0.0}
    r2 = resolver(issuer, clock=lambda: clock["now"])
    refuses(r2, old, "not a known key")


def test_unknown_kids_do_not_refetch_more_than_once_per_interval(issuer: Issuer) -> None:
    clock = {"now": 1000.0}
    r = resolver(issuer, clock=lambda: clock["now"], min_refresh_s=30.0)
    issuer.add("ed-2", ed25519.Ed25519PrivateKey.generate())
    clock["now"] += 31  # a refresh is allowed: the new key is found
    assert r.resolve(ASSERTED, issuer.token("ed-2")) == AGENT
    issuer.add("ed-3", ed25519.Ed25519PrivateKey.generate())
    clock["now"] += 1  # too soon after the last read: the JWKS is not read again
    refuses(r, issuer.token("ed-3"), "not a known key")
    clock["now"] += 30
    assert r.resolve(ASSERTED, issuer.token("ed-3")) == AGENT


def test_a_failed_refresh_keeps_the_known_keys(issuer: Issuer) -> None:
    clock = {"now": 0.0}
    r = resolver(issuer, clock=lambda: clock["now"])
    issuer.path.write_text("{not json")
    clock["now"] += 10_000  # stale: re-read, fails, keeps the keys
    assert r.resolve(ASSERTED, issuer.token("ed-1")) == AGENT


def test_a_jwks_of_private_keys_or_without_kids_is_refused(tmp_path: Path) -> None:
    private = json.loads(OKPAlgorithm.to_jwk(ed25519.Ed25519PrivateKey.generate())) | {"kid": "p"}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [private]}))
    with pytest.raises(AuthConfigError, match="no public"):
        KeySet(str(path))
    with pytest.raises(AuthConfigError, match="cannot load"):
        KeySet(str(tmp_path / "missing.json"))


# --- configuration -----------------------------------------------------------------------------------

def jwt_settings(**values: Any) -> Any:
    return load_settings(auth_mode="jwt", auth_jwt_issuer=ISSUER, **values)


def test_jwt_mode_from_settings(issuer: Issuer) -> None:
    r = ActorResolver.from_settings(jwt_settings(auth_jwks=str(issuer.path)))
    assert r.resolve(ASSERTED, issuer.token("rsa-1")) == AGENT
    assert "ES256,EdDSA,RS256" in r.describe() and SECRET not in r.describe()


@pytest.mark.parametrize(("values", "match"), [
    ({}, "TICKETS_AUTH_JWKS"),
    ({"auth_jwt_secret": SECRET}, "TICKETS_AUTH_JWT_ALLOW_HS256"),
    ({"auth_jwt_allow_hs256": True}, "needs TICKETS_AUTH_JWT_SECRET"),
    ({"auth_jwt_allow_hs256": True, "auth_jwt_secret": "short"}, "32 bytes"),
    ({"auth_jwks": "/nonexistent/jwks.json"}, "cannot load the JWKS"),
])
def test_jwt_mode_refuses_to_start_misconfigured(values: dict[str, Any], match: str) -> None:
    with pytest.raises(AuthConfigError, match=match):
        ActorResolver.from_settings(jwt_settings(**values))


def test_jwt_mode_needs_an_issuer(issuer: Issuer) -> None:
    with pytest.raises(AuthConfigError, match="ISSUER"):
        ActorResolver.from_settings(load_settings(auth_mode="jwt", auth_jwks=str(issuer.path)))


def test_hs256_when_explicitly_allowed() -> None:
    r = ActorResolver.from_settings(jwt_settings(auth_jwt_allow_hs256=True, auth_jwt_secret=SECRET))
    assert r.resolve(ASSERTED, issue_token(SECRET, AGENT, issuer=ISSUER, audience=AUDIENCE)) == AGENT


# --- who may ingest email -------------------------------------------------------------------------------

GATEWAY = uuid.uuid4()


@pytest.mark.parametrize(("mode", "gateways", "sender", "allowed"), [
    ("jwt", [GATEWAY], GATEWAY, True),
    ("jwt", [GATEWAY], uuid.uuid4(), False),
    ("jwt", [], GATEWAY, False),
    ("trust", [GATEWAY], uuid.uuid4(), False),
    ("trust", [], uuid.uuid4(), True),  # trust believes the envelope anyway; development convenience
])
def test_only_gateway_accounts_may_ingest_email(mode: str, gateways: list[uuid.UUID], sender: uuid.UUID,
                                                allowed: bool) -> None:
    r = ActorResolver(mode, SECRET if mode == "jwt" else "", gateway_accounts=gateways)
    system = Actor(sender, Role.SYSTEM)
    r.authorise(system, "ticket.create")  # other commands are not this rule's business
    if allowed:
        r.authorise(system, "ticket.ingest_email")
    else:
        with pytest.raises(Forbidden, match="gateway"):
            r.authorise(system, "ticket.ingest_email")


def test_gateway_accounts_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETS_AUTH_GATEWAY_ACCOUNTS", f'["{GATEWAY}"]')
    assert ActorResolver.from_settings(load_settings()).gateway_accounts == {GATEWAY}


# --- `tickets token` ------------------------------------------------------------------------------------

def test_the_development_key_pair_matches_and_mints_accepted_tokens(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "dev" / "keys"
    r = ActorResolver("jwt", keys=KeySet(str(root / "jwks.json")), issuer="tickets-dev", audience=AUDIENCE)
    customer = uuid.uuid4()
    token = mint_token((root / "dev-private.pem").read_bytes(), sub=AGENT.user_id, role="customer",
                       customer_id=customer, kid="tickets-dev-1", issuer="tickets-dev", audience=AUDIENCE)
    assert r.resolve(ASSERTED, token) == Actor(AGENT.user_id, Role.CUSTOMER, customer)


@pytest.mark.parametrize("make", [lambda: ec.generate_private_key(ec.SECP256R1()),
                                  lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)],
                         ids=["ES256", "RS256"])
def test_mint_token_picks_the_keys_algorithm(issuer: Issuer, make: Any) -> None:
    key = make()
    issuer.add("k", key)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    token = mint_token(pem, sub=AGENT.user_id, role="agent", kid="k", issuer=ISSUER, audience=AUDIENCE)
    assert resolver(issuer).resolve(ASSERTED, token) == AGENT


# --- start-up ---------------------------------------------------------------------------------------

def run_cli(*args: str, **env: str) -> Any:
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if not k.startswith("TICKETS_")} | env
    return subprocess.run([sys.executable, "-m", "service.cli", *args], env=environ, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize(("env", "message"), [
    ({}, "tickets: TICKETS_AUTH_MODE is not set: choose jwt (production) or trust"),
    ({"TICKETS_AUTH_MODE": "jwt"}, "tickets: TICKETS_AUTH_MODE=jwt needs TICKETS_AUTH_JWKS"),
])
def test_tickets_run_refuses_to_start_without_a_usable_auth_mode(env: dict[str, str], message: str) -> None:
    done = run_cli("run", TICKETS_HTTP_PORT="0", TICKETS_KAFKA_BOOTSTRAP="127.0.0.1:9", **env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(message), done.stderr
    assert "Traceback" not in done.stderr


def test_tickets_token_prints_a_token_the_development_jwks_accepts() -> None:
    done = run_cli("token", "--role", "admin")
    assert done.returncode == 0, done.stderr
    root = Path(__file__).resolve().parents[2] / "dev" / "keys"
    r = ActorResolver("jwt", keys=KeySet(str(root / "jwks.json")), issuer="tickets-dev", audience=AUDIENCE)
    assert r.resolve(ASSERTED, done.stdout.strip()).role is Role.ADMIN
    gateway = run_cli("token", "--gateway")
    from service.cli import DEV_GATEWAY

    actor = r.resolve(ASSERTED, gateway.stdout.strip())
    assert (str(actor.user_id), actor.role) == (DEV_GATEWAY, Role.SYSTEM)
