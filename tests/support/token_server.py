"""A token server for a registry in token-auth mode, served by aiohttp in the test's event loop.

Anonymous callers get `pull` on repositories under `public/`; known users get what they ask for;
wrong credentials get 401. Tokens are ES256 JWTs (P-256, raw r||s signature) whose header carries
the signing certificate as `x5c`; `rootcertbundle` is that same self-signed certificate.

    async with TokenServer(tmp_path, users={"alice": "secret"}) as tokens:
        registry = start_registry(auth=tokens.registry_auth())
"""
from __future__ import annotations

import base64
import binascii
import datetime
import json
import secrets
import time
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.support.loopback import LoopbackServer


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenServer(LoopbackServer):
    def __init__(self, directory: Path, *, users: dict[str, str] | None = None,
                 public_prefix: str = "public/", service: str = "basewatch-registry",
                 issuer: str = "basewatch-test-tokens", expires_in: int = 300):
        super().__init__()
        self.users = dict(users or {})
        self.public_prefix = public_prefix
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.requests: list[tuple[str | None, list[str]]] = []  # (user or None, scopes)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._cert = _self_signed(self._key, issuer)
        directory.mkdir(parents=True, exist_ok=True)
        self.rootcertbundle = directory / "token-ca.pem"
        self.rootcertbundle.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_auth(self) -> dict:
        """The `auth:` section for start_registry(auth=...)."""
        return {"token": {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                          "rootcertbundle": str(self.rootcertbundle)}}

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self._handle)
        return app

    def issue(self, subject: str, access: list[dict]) -> str:
        """A signed token granting `access` ([{type, name, actions}]); also for pushing in tests."""
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self._cert.public_bytes(
                      serialization.Encoding.DER)).decode("ascii")]}
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service,
                  "exp": now + self.expires_in, "nbf": now - 10, "iat": now,
                  "jti": secrets.token_hex(16), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}." \
                        f"{_b64url(json.dumps(claims).encode())}"
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def push_token(self, *repositories: str) -> str:
        """A token for pull and push on `repositories`, for ImagePusher(headers=...)."""
        return self.issue("test-pusher", [{"type": "repository", "name": name,
                                           "actions": ["pull", "push"]}
                                          for name in repositories])

    async def _handle(self, request: web.Request) -> web.Response:
        user = self._authenticate(request.headers.get("Authorization"))
        scopes = request.query.getall("scope", [])
        self.requests.append((user or None, scopes))
        if user is False:
            return web.json_response({"errors": [{"code": "UNAUTHORIZED",
                                                  "message": "bad credentials"}]}, status=401)
        access = [grant for scope in scopes if (grant := self._grant(user, scope))]
        token = self.issue(user or "", access)
        return web.json_response({"token": token, "access_token": token,
                                  "expires_in": self.expires_in,
                                  "issued_at": datetime.datetime.now(datetime.UTC).isoformat()})

    def _authenticate(self, header: str | None) -> str | None | bool:
        """The user name, None when anonymous, False when the credentials are wrong."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        try:
            username, _, password = base64.b64decode(value).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if scheme.lower() != "basic" or self.users.get(username) != password:
            return False
        return username

    def _grant(self, user: str | None, scope: str) -> dict | None:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        wanted = [a for a in actions.split(",") if a]
        if kind != "repository" or not name:
            return None
        if user is None:
            wanted = [a for a in wanted if a == "pull"] if name.startswith(self.public_prefix) \
                else []
        return {"type": kind, "name": name, "actions": wanted} if wanted else None


def _self_signed(key: ec.EllipticCurvePrivateKey, name: str) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
