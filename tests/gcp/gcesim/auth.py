"""OAuth for the simulated Google Cloud: the keys it issues, the token endpoint, and who a bearer
token is (STS and impersonation: federation.py).

Owns `Auth`: at start it makes the test's service-account key (RSA 2048, PKCS#8, like a key from
`iam.serviceAccounts.keys.create`) and writes `WORKDIR/credentials.json` (type
`service_account`, `token_uri` = this simulator) and `WORKDIR/authorized_user.json` (gcloud's
ADC file shape); federation.py adds the `external_account` files. It accepts:
  * self-signed JWTs as bearer tokens — what google-cloud-auth sends for a service-account key
    (no token endpoint call): RS256 signed by the issued key (`kid`), `iss` = `sub` = the key's
    client_email, `scope` (or `aud` = https://SERVICE.googleapis.com/), not expired;
  * `POST /token` grant `urn:ietf:params:oauth:grant-type:jwt-bearer` (form), JWT as above with
    `aud` = token_uri and a `scope`; grant `refresh_token` (JSON, as google-cloud-auth sends,
    or form) for the authorized user;
  * opaque `ya29.` tokens this simulator issued (token endpoint, STS, generateAccessToken, metadata
    server).
Principals: the key's service account, the user and the federated identity own the projects;
instance service accounts (metadata-server tokens) own nothing and reach only what IAM bindings
grant them. Token values are never logged.
"""

import base64
import json
import os
import secrets
import threading
import time
import urllib.parse

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_SECONDS = 3599
SKEW = 300


class AuthError(Exception):
    def __init__(self, message, kind="invalid"):
        super().__init__(message)
        self.kind = kind


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    text = str(text)
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Auth:
    def __init__(self, workdir, base_url, project, owner_email):
        self.workdir, self.base_url, self.project = workdir, base_url, project
        self.token_uri = base_url + "/token"
        self.lock = threading.Lock()
        self.tokens = {}        # token -> {principal, scopes, expires, kind}
        self.keys = {}          # kid -> {email, public}
        self.owners = set()
        self.issued = {"jwt_bearer": 0, "refresh_token": 0, "sts": 0, "metadata": 0,
                       "self_signed_seen": 0}
        self.owner_email = owner_email
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = secrets.token_hex(20)
        self.keys[kid] = {"email": owner_email, "public": key.public_key()}
        self.owners.add(f"serviceAccount:{owner_email}")
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        self.credentials_file = os.path.join(workdir, "credentials.json")
        _write_json(self.credentials_file, {
            "type": "service_account", "project_id": project, "private_key_id": kid,
            "private_key": pem, "client_email": owner_email,
            "client_id": str(100000000000000000000 + secrets.randbelow(10 ** 20)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
                                    + urllib.parse.quote(owner_email),
            "universe_domain": "googleapis.com"})
        self.user = {"client_id": "764086051850-sim.apps.googleusercontent.com",
                     "client_secret": "d-" + secrets.token_urlsafe(18),
                     "refresh_token": "1//sim-" + secrets.token_urlsafe(40),
                     "email": "tester@example.com"}
        self.owners.add("user:" + self.user["email"])
        self.user_file = os.path.join(workdir, "authorized_user.json")
        _write_json(self.user_file, {"type": "authorized_user", "token_uri": self.token_uri,
                                     **{k: self.user[k] for k in
                                        ("client_id", "client_secret", "refresh_token")}})

    # ----- tokens -----
    def mint(self, principal, scopes, kind):
        token = "ya29.sim-" + secrets.token_urlsafe(48)
        with self.lock:
            now = time.time()
            self.tokens = {t: v for t, v in self.tokens.items() if v["expires"] > now}
            self.tokens[token] = {"principal": principal, "scopes": set(scopes),
                                  "expires": now + TOKEN_SECONDS, "kind": kind}
            self.issued[kind] = self.issued.get(kind, 0) + 1
        return token

    def identify(self, bearer):
        """{principal, scopes, kind} of a bearer token; AuthError if it is not valid."""
        if bearer.count(".") == 2 and not bearer.startswith("ya29."):
            claims = self._verify_jwt(bearer, audience=None)
            scopes = set(str(claims.get("scope") or "").split())
            aud = claims.get("aud")
            if not scopes and not (isinstance(aud, str) and aud.startswith("https://")):
                raise AuthError("a self-signed JWT needs `scope` or a service `aud`")
            if aud and not scopes:
                scopes = {"aud:" + aud}
            with self.lock:
                self.issued["self_signed_seen"] += 1
            return {"principal": "serviceAccount:" + claims["iss"], "scopes": scopes,
                    "kind": "self-signed-jwt"}
        with self.lock:
            t = self.tokens.get(bearer)
        if t is None:
            raise AuthError("unknown access token")
        if t["expires"] < time.time():
            raise AuthError("expired access token", "expired")
        return t

    def is_owner(self, principal):
        return principal in self.owners

    # ----- JWTs -----
    def _verify_jwt(self, jwt, audience):
        try:
            h64, c64, s64 = jwt.split(".")
            header = json.loads(unb64url(h64))
            claims = json.loads(unb64url(c64))
            sig = unb64url(s64)
        except (ValueError, TypeError):
            raise AuthError("malformed JWT")
        if header.get("alg") != "RS256":
            raise AuthError(f"JWT alg {header.get('alg')!r} is not RS256")
        keys = [self.keys[header["kid"]]] if header.get("kid") in self.keys else (
            [] if header.get("kid") else list(self.keys.values()))
        for k in keys:
            try:
                k["public"].verify(sig, f"{h64}.{c64}".encode(), padding.PKCS1v15(),
                                   hashes.SHA256())
                break
            except InvalidSignature:
                continue
        else:
            raise AuthError("Invalid JWT Signature.")
        if claims.get("iss") != k["email"]:
            raise AuthError("JWT iss is not the key's client_email")
        if claims.get("sub") not in (None, k["email"]):
            raise AuthError("JWT sub is not the key's client_email")
        now = time.time()
        try:
            exp, iat = float(claims["exp"]), float(claims["iat"])
        except (KeyError, TypeError, ValueError):
            raise AuthError("JWT needs numeric exp and iat")
        if exp < now - SKEW or iat > now + SKEW or exp - iat > 3600 + 2 * SKEW:
            raise AuthError("Invalid JWT: Token must be a short-lived token (60 minutes) and in"
                            " a reasonable timeframe. Check your iat and exp values in the JWT "
                            "claim.")
        if audience is not None and claims.get("aud") != audience:
            raise AuthError(f"JWT aud {claims.get('aud')!r} is not {audience}")
        return claims

    # ----- the token endpoints -----
    def token_grant(self, form):
        """POST /token: (status, body)."""
        grant = form.get("grant_type")
        try:
            if grant == JWT_GRANT:
                claims = self._verify_jwt(form.get("assertion") or "", audience=self.token_uri)
                scopes = str(claims.get("scope") or "").split()
                if not scopes:
                    raise AuthError("Invalid OAuth scope or ID token audience provided.",
                                    "invalid_scope")
                token = self.mint("serviceAccount:" + claims["iss"], scopes, "jwt_bearer")
                return 200, {"access_token": token, "expires_in": TOKEN_SECONDS,
                             "token_type": "Bearer"}
            if grant == "refresh_token":
                u = self.user
                if form.get("client_id") != u["client_id"] or \
                        form.get("client_secret") != u["client_secret"]:
                    return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
                if form.get("refresh_token") != u["refresh_token"]:
                    raise AuthError("Bad Request")
                scopes = str(form.get("scopes") or form.get("scope") or
                             "https://www.googleapis.com/auth/cloud-platform").split()
                token = self.mint("user:" + u["email"], scopes, "refresh_token")
                return 200, {"access_token": token, "expires_in": TOKEN_SECONDS,
                             "token_type": "Bearer", "scope": " ".join(scopes)}
        except AuthError as exc:
            kind = exc.kind if exc.kind.startswith("invalid_") else "invalid_grant"
            return 400, {"error": kind, "error_description": str(exc)}
        return 400, {"error": "unsupported_grant_type",
                     "error_description": f"Invalid grant_type: {grant}"}

    def snapshot(self):
        with self.lock:
            live = [{"principal": v["principal"], "kind": v["kind"],
                     "scopes": sorted(v["scopes"]),
                     "expires_in": round(v["expires"] - time.time())}
                    for v in self.tokens.values()]
            return {"owners": sorted(self.owners), "issued": dict(self.issued),
                    "live_tokens": live, "credentials_file": self.credentials_file,
                    "authorized_user_file": self.user_file}


def parse_form(req):
    """A token request body: form-encoded or JSON -> {name: str}."""
    ctype = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    raw = req.raw_body or b""
    if ctype == "application/json":
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            return None
        return {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in data.items()} \
            if isinstance(data, dict) else None
    return {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace"),
                                                      keep_blank_values=True).items()}


def _write_json(path, data):
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(path + ".tmp", path)
