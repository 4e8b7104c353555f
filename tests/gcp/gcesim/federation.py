"""Workload identity federation for the simulated Google Cloud: a GitHub-Actions-like OIDC issuer,
Security Token Service (`POST /v1/token`, sts.googleapis.com) and IAM Credentials'
`generateAccessToken` (iamcredentials.googleapis.com).

Owns `Federation`. No discovery document of STS or IAM Credentials is in ../shared/specs, so
the shapes follow Google's reference pages:
  * STS `token` (RFC 8693 form): `grant_type` = token-exchange, `audience` = the provider's
    full resource name (`//iam.googleapis.com/projects/NUMBER/locations/global/
    workloadIdentityPools/POOL/providers/PROVIDER`), `scope` (required when exchanging an
    external credential), `requested_token_type` = access_token, `subject_token_type` = jwt or
    id_token, `subject_token`: an OIDC token that must verify (RS256 with the issuer's key,
    `iss`, `aud` = the provider's allowed audience `https://iam.googleapis.com/projects/NUMBER/
    …/providers/PROVIDER`, `exp`/`iat`). Errors are OAuth's `{"error", "error_description"}`.
    The answer: `{access_token, issued_token_type, token_type, expires_in}`; the token's
    principal is `principal://iam.googleapis.com/projects/NUMBER/locations/global/
    workloadIdentityPools/POOL/subject/SUB`.
  * `POST /v1/projects/-/serviceAccounts/EMAIL:generateAccessToken` with the federated token
    as bearer, JSON `{scope: [..] (required), lifetime: "Ns" (≤ 3600 s), delegates?}` →
    `{accessToken, expireTime}`; a caller without `roles/iam.workloadIdentityUser` on the
    account gets 403 "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or
    it may not exist)."
  * the GitHub OIDC token request (`ACTIONS_ID_TOKEN_REQUEST_URL`): `GET /_github/idtoken?
    api-version=2.0&audience=AUD` with `Authorization: Bearer ACTIONS_ID_TOKEN_REQUEST_TOKEN`
    → `{"count": N, "value": JWT}` (what google-github-actions/auth's credentials file reads
    through `credential_source.url`, format json, field `value`).

Files written at start (WORKDIR): `oidc-token` (a signed token of subject
`repo:clusterctl/ci:ref:refs/heads/main`, text) and `external_account.json` (file source, no
impersonation: that subject's principal owns the projects); `external_account_url.json` (URL
source as google-github-actions/auth writes it, subject `repo:clusterctl/ci:environment:deploy`,
which owns nothing but may impersonate `github-deployer@PROJECT.iam.gserviceaccount.com`, which
owns the projects). Token values are never logged or put in the inventory.
"""

import base64
import json
import os
import re
import secrets
import threading
import time
import urllib.parse

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .errors import esf

ISSUER = "https://token.actions.githubusercontent.com"
STS_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
SUBJECT_TYPES = ("urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token")
CLOUD = "https://www.googleapis.com/auth/cloud-platform"
POOL, PROVIDER = "github", "github"
DIRECT_SUB = "repo:clusterctl/ci:ref:refs/heads/main"
IMPERSONATING_SUB = "repo:clusterctl/ci:environment:deploy"
SKEW = 60
GENERATE_PATH = r"/v1/projects/-/serviceAccounts/(?P<account>[^/:]+):generateAccessToken"
LIFETIME_RX = re.compile(r"^(\d+)(\.\d{1,9})?s$")


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _oauth(status, error, description):
    return status, {"error": error, "error_description": description}


class Federation:
    def __init__(self, auth, workdir, base_url, project, number):
        self.auth, self.project, self.number = auth, project, number
        self.lock = threading.Lock()
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)
        pool = f"projects/{number}/locations/global/workloadIdentityPools/{POOL}"
        self.provider_name = f"{pool}/providers/{PROVIDER}"
        self.audience = "//iam.googleapis.com/" + self.provider_name
        self.allowed_audience = "https://iam.googleapis.com/" + self.provider_name
        self.principal_prefix = f"principal://iam.googleapis.com/{pool}/subject/"
        self.deployer = f"github-deployer@{project}.iam.gserviceaccount.com"
        # who may impersonate whom (roles/iam.workloadIdentityUser on the account)
        self.impersonators = {self.deployer: {self.principal_prefix + IMPERSONATING_SUB}}
        auth.owners.add(self.principal_prefix + DIRECT_SUB)
        auth.owners.add("serviceAccount:" + self.deployer)
        self.request_token = "ghs-sim-" + secrets.token_urlsafe(24)
        self.counts = {"oidc_issued": 0, "sts_refused": 0, "impersonation_refused": 0}
        self.sts_uri = base_url + "/v1/token"
        self.subject_file = os.path.join(workdir, "oidc-token")
        with open(self.subject_file, "w") as fh:
            fh.write(self.oidc(DIRECT_SUB, self.allowed_audience))
        self.file_credentials = os.path.join(workdir, "external_account.json")
        _write_json(self.file_credentials, {
            "type": "external_account", "audience": self.audience,
            "subject_token_type": SUBJECT_TYPES[0], "token_url": self.sts_uri,
            "credential_source": {"file": self.subject_file, "format": {"type": "text"}},
            "universe_domain": "googleapis.com"})
        self.url_credentials = os.path.join(workdir, "external_account_url.json")
        request_url = base_url + "/_github/idtoken?api-version=2.0"
        _write_json(self.url_credentials, {
            "type": "external_account", "audience": self.audience,
            "subject_token_type": SUBJECT_TYPES[0], "token_url": self.sts_uri,
            "service_account_impersonation_url":
                f"{base_url}/v1/projects/-/serviceAccounts/{self.deployer}:generateAccessToken",
            "credential_source": {
                "url": request_url + "&audience=" + urllib.parse.quote(self.allowed_audience,
                                                                       safe=""),
                "headers": {"Authorization": "Bearer " + self.request_token},
                "format": {"type": "json", "subject_token_field_name": "value"}},
            "universe_domain": "googleapis.com"})

    # ----- the OIDC issuer -----
    def oidc(self, sub, aud, lifetime=3600):
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        claims = {"iss": ISSUER, "sub": sub, "aud": aud, "iat": now, "nbf": now,
                  "exp": now + lifetime, "repository": "clusterctl/ci",
                  "jti": secrets.token_hex(8)}
        signing = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
        sig = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        with self.lock:
            self.counts["oidc_issued"] += 1
        return signing + "." + _b64(sig)

    def github_idtoken(self, headers, query):
        """GET /_github/idtoken: (status, body)."""
        if (headers.get("authorization") or "") != "Bearer " + self.request_token:
            return 401, {"message": "Bad credentials"}
        aud = (query.get("audience") or [""])[0] or "https://github.com/clusterctl"
        return 200, {"count": 1, "value": self.oidc(IMPERSONATING_SUB, aud)}

    def _verify(self, token):
        """The claims of a subject token; ValueError with STS's words if it does not verify."""
        try:
            h64, c64, s64 = token.split(".")
            header, claims = json.loads(_unb64(h64)), json.loads(_unb64(c64))
            sig = _unb64(s64)
        except (ValueError, TypeError):
            raise ValueError("Unable to parse the ID Token.")
        if header.get("alg") != "RS256" or header.get("kid") != self.kid:
            raise ValueError("Invalid ID Token: no key of the issuer matches its header.")
        try:
            self.key.public_key().verify(sig, f"{h64}.{c64}".encode(), padding.PKCS1v15(),
                                         hashes.SHA256())
        except InvalidSignature:
            raise ValueError("Invalid JWT signature.")
        if claims.get("iss") != ISSUER:
            raise ValueError(f"The issuer in ID Token {claims.get('iss')} does not match the "
                             "expected ones.")
        auds = claims.get("aud") if isinstance(claims.get("aud"), list) else [claims.get("aud")]
        if self.allowed_audience not in auds:
            raise ValueError(f"The audience in ID Token {auds} does not match the expected "
                             "audience.")
        now = time.time()
        try:
            exp, iat = float(claims["exp"]), float(claims["iat"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("The ID Token has no exp or iat.")
        if exp < now - SKEW:
            raise ValueError(f"ID Token issued at {int(iat)} is stale to sign-in.")
        if iat > now + SKEW:
            raise ValueError("ID Token is not yet valid.")
        if not claims.get("sub"):
            raise ValueError("The ID Token has no subject.")
        return claims

    # ----- STS -----
    def sts_exchange(self, form):
        refused = self._sts(form)
        if refused[0] != 200:
            with self.lock:
                self.counts["sts_refused"] += 1
        return refused

    def _sts(self, form):
        if form.get("grant_type") != STS_GRANT:
            return _oauth(400, "unsupported_grant_type",
                          f"Invalid grant_type: {form.get('grant_type')}")
        if form.get("requested_token_type") != ACCESS_TOKEN_TYPE:
            return _oauth(400, "invalid_request",
                          "Invalid value for \"requested_token_type\".")
        if form.get("subject_token_type") not in SUBJECT_TYPES:
            return _oauth(400, "invalid_request",
                          "Invalid value for \"subject_token_type\": an OIDC provider takes "
                          "urn:ietf:params:oauth:token-type:jwt or :id_token.")
        if form.get("audience") != self.audience:
            return _oauth(400, "invalid_target", "The target service indicated by the "
                          "\"audience\" parameters is invalid. This might either be because "
                          "the pool or provider is disabled or deleted or because it doesn't "
                          "exist.")
        scopes = str(form.get("scope") or "").split()
        if not scopes:
            return _oauth(400, "invalid_scope", "Scope is required when exchanging an "
                          "external credential.")
        try:
            claims = self._verify(form.get("subject_token") or "")
        except ValueError as exc:
            return _oauth(400, "invalid_grant", str(exc))
        token = self.auth.mint(self.principal_prefix + claims["sub"], scopes, "sts")
        return 200, {"access_token": token, "issued_token_type": ACCESS_TOKEN_TYPE,
                     "token_type": "Bearer", "expires_in": 3599}

    # ----- IAM Credentials -----
    def generate_access_token(self, caller, account, body):
        """(status, body) of generateAccessToken; `caller` is the bearer's identity."""
        denied = esf(403, f"Permission 'iam.serviceAccounts.getAccessToken' denied on resource "
                     "(or it may not exist).")
        if not isinstance(body, dict):
            return 400, esf(400, "Invalid JSON payload received.").body
        unknown = set(body) - {"scope", "lifetime", "delegates"}
        if unknown:
            name = sorted(unknown)[0]
            return 400, esf(400, f"Invalid JSON payload received. Unknown name \"{name}\": "
                            "Cannot find field.").body
        scope = body.get("scope")
        if not isinstance(scope, list) or not scope or \
                not all(isinstance(s, str) and s for s in scope):
            return 400, esf(400, "Scope required.").body
        lifetime = body.get("lifetime", "3600s")
        m = LIFETIME_RX.match(lifetime) if isinstance(lifetime, str) else None
        if m is None or not 1 <= int(m.group(1)) <= 3600:
            return 400, esf(400, "Invalid value at 'lifetime' (type.googleapis.com/"
                            "google.protobuf.Duration): must be between 1s and 3600s.").body
        if body.get("delegates"):
            return 400, esf(400, "delegates are not simulated").body
        allowed = self.impersonators.get(account, set())
        if caller is None or caller["principal"] not in allowed or \
                not (caller["scopes"] & {CLOUD, "https://www.googleapis.com/auth/iam"}):
            with self.lock:
                self.counts["impersonation_refused"] += 1
            return 403, denied.body
        seconds = int(m.group(1))
        token = self.auth.mint("serviceAccount:" + account, scope, "impersonated")
        expire = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
        return 200, {"accessToken": token, "expireTime": expire}

    def snapshot(self):
        with self.lock:
            return {"audience": self.audience, "deployer": self.deployer,
                    "file_credentials": self.file_credentials,
                    "url_credentials": self.url_credentials, **self.counts}


def _write_json(path, data):
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(path + ".tmp", path)
