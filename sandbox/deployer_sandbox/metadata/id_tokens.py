"""The sandbox's Google-signed ID tokens: minted by its metadata server, checked at Cloud Run's door.

    IdTokenKey   an RSA key made when the sandbox starts (it plays Google's signing key)
    ├── sign()     a JWT as Google signs one: RS256, `kid` in the header, claims iss,
    │              aud, azp, sub, email, email_verified, iat, exp (an hour)
    └── verify()   what Cloud Run checks before a private service sees a request:
                   the signature, iat/exp, the issuer, and that `aud` is one of the
                   service's audiences (its URL, or a custom audience)

Signing and checking use google-auth's own JWT code (`google.auth.jwt`,
`google.auth.crypt.RSASigner`); the key is made with `cryptography`, which
google-auth depends on. Only this key's tokens pass: a real Google ID token, a
token signed by another sandbox, an access token or a made-up string do not.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Collection, Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt

ISSUER = "https://accounts.google.com"
# Google writes iss as ISSUER; verifiers also accept it without the scheme
# (google/oauth2/id_token.py, `_GOOGLE_ISSUERS`).
ISSUERS = frozenset({ISSUER, "accounts.google.com"})
LIFETIME_S = 3600  # Google's ID tokens live an hour


class InvalidIdToken(ValueError):
    """The token is not one this key signed, or it is no longer (or not yet) valid: 401."""


class WrongAudience(ValueError):
    """A valid token, but for someone else: its `aud` is none of the accepted audiences: 403."""


def unique_id(email: str) -> str:
    """A service account's numeric unique id (the `sub` and `azp` of its tokens), stable per email."""
    digest = int.from_bytes(hashlib.sha256(email.encode()).digest()[:8], "big")
    return "1" + str(digest).rjust(20, "0")[-20:]


class IdTokenKey:
    """The sandbox's signing key. Thread-safe: signing and checking keep no state."""

    def __init__(self) -> None:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.key_id = secrets.token_hex(20)
        self._signer = crypt.RSASigner.from_string(pem, key_id=self.key_id)  # type: ignore[no-untyped-call]
        self.public_pem = (
            private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def certs(self) -> dict[str, str]:
        """{key id: public key PEM}, the shape `google.auth.jwt.decode(certs=...)` takes."""
        return {self.key_id: self.public_pem}

    def sign(
        self,
        audience: str,
        email: str,
        *,
        issued_at: int | None = None,
        lifetime: int = LIFETIME_S,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """An ID token for `audience`, issued to the service account `email`."""
        now = int(time.time()) if issued_at is None else issued_at
        subject = unique_id(email)
        claims: dict[str, Any] = {
            "aud": audience,
            "azp": subject,
            "email": email,
            "email_verified": True,
            "exp": now + lifetime,
            "iat": now,
            "iss": ISSUER,
            "sub": subject,
            **(extra or {}),
        }
        token: bytes = jwt.encode(self._signer, claims)  # type: ignore[no-untyped-call]
        return token.decode("ascii")

    def verify(self, token: str, audiences: Collection[str]) -> dict[str, Any]:
        """The token's claims, if this key signed it, it is current and its `aud` is accepted.

        Raises InvalidIdToken (not a token of this key, expired, used before it was
        issued, wrong issuer) or WrongAudience (valid, but for another audience).
        """
        try:
            claims: dict[str, Any] = dict(
                jwt.decode(token, certs=self.certs(), audience=None)  # type: ignore[no-untyped-call]
            )
        except (ValueError, TypeError) as error:
            # google-auth's MalformedError and InvalidValue are ValueErrors; so are bad
            # base64 and JSON inside a token.
            raise InvalidIdToken(str(error)) from None
        if claims.get("iss") not in ISSUERS:
            raise InvalidIdToken(f"issuer {claims.get('iss')!r} is not Google")
        if claims.get("aud") not in audiences:
            raise WrongAudience(
                f"audience {claims.get('aud')!r} is not one of {sorted(audiences)!r}"
            )
        return claims
