"""clusterctl: fetch this node's private keys from the platform's secret store at boot.

Rendered into a VM's files by clusterctl when the platform's API would show the user-data to
read-only callers (EC2): the keys live in the secret store, readable only with the machine's
own identity, and this script writes them beside the node's other files before Dask starts.
It runs in the Dask image (`python`, standard library only) with host networking, so it reaches
the link-local metadata service like the host does.

Usage: python fetch_secrets.py secrets.json
secrets.json: {"store": "aws-ssm" | "gcp-secret-manager", "region", "endpoint", "deadline_seconds",
               "files": {"relative/path": {"name": "<name in the store>", "mode": "0600"}}}

It never prints a secret. Exit status 0 when every file was written, 1 otherwise (Dask then
cannot load its key, exits, and the run script powers the machine off).
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import random
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

CALL_TIMEOUT = 10


class Retry(Exception):
    """A failure that may pass (the machine's identity not usable yet, throttling, network)."""


def log(message):
    print(f"clusterctl: {message}", flush=True)


def http(method, url, headers=None, body=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=CALL_TIMEOUT) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        raise Retry(f"{method} {url.split('?')[0]}: {e}")


# -- AWS: instance role credentials through IMDSv2, SSM GetParameters signed with SigV4 --------

def imds_base():
    # The SDKs' variable for the metadata service's address; unset on a real instance.
    return os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT",
                          "http://169.254.169.254").rstrip("/")


def aws_credentials():
    base = imds_base()
    status, token = http("PUT", base + "/latest/api/token",
                         {"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    if status != 200:
        raise Retry(f"IMDSv2 token: HTTP {status}")
    headers = {"X-aws-ec2-metadata-token": token.decode()}
    path = base + "/latest/meta-data/iam/security-credentials/"
    status, roles = http("GET", path, headers)
    if status != 200 or not roles.strip():
        raise Retry(f"no instance role yet (HTTP {status}); IAM may still be propagating")
    role = roles.decode().split()[0]
    status, body = http("GET", path + urllib.parse.quote(role), headers)
    if status != 200:
        raise Retry(f"instance role credentials: HTTP {status}")
    creds = json.loads(body)
    if creds.get("Code", "Success") != "Success":
        raise Retry(f"instance role credentials: {creds.get('Code')}")
    return creds["AccessKeyId"], creds["SecretAccessKey"], creds.get("Token")


def sign_v4(method, url, region, service, headers, body, key_id, secret, token):
    """AWS Signature Version 4 for a request without a query string."""
    parsed = urllib.parse.urlsplit(url)
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = dict(headers)
    headers["host"] = parsed.netloc
    headers["x-amz-date"] = amz_date
    if token:
        headers["x-amz-security-token"] = token
    canon = {k.lower(): " ".join(v.split()) for k, v in headers.items()}
    signed = ";".join(sorted(canon))
    canonical = "\n".join([
        method,
        parsed.path or "/",
        "",
        "".join(f"{k}:{canon[k]}\n" for k in sorted(canon)),
        signed,
        hashlib.sha256(body).hexdigest(),
    ])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (day, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, "
                                f"SignedHeaders={signed}, Signature={signature}")
    return headers


def aws_ssm_fetch(config, names):
    key_id, secret, token = aws_credentials()
    body = json.dumps({"Names": sorted(set(names)), "WithDecryption": True}).encode()
    headers = sign_v4("POST", config["endpoint"], config["region"], "ssm", {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AmazonSSM.GetParameters",
    }, body, key_id, secret, token)
    status, answer = http("POST", config["endpoint"], headers, body)
    if status != 200:
        try:
            err = json.loads(answer)
            kind = err.get("__type", "").split("#")[-1] or f"HTTP {status}"
            text = err.get("message") or err.get("Message") or ""
        except ValueError:
            kind, text = f"HTTP {status}", ""
        # Denied right after launch: the role's policy may still be propagating.
        raise Retry(f"ssm:GetParameters: {kind} {text}".strip())
    answer = json.loads(answer)
    if answer.get("InvalidParameters"):
        raise Retry(f"ssm:GetParameters: not found: {', '.join(answer['InvalidParameters'])}")
    return {p["Name"]: p["Value"] for p in answer.get("Parameters", [])}


# -- GCP: the instance's service account token from the metadata server, Secret Manager -------

def gce_metadata_base():
    # google-cloud-auth's variable for the metadata server's address; unset on a real instance.
    host = os.environ.get("GCE_METADATA_HOST", "169.254.169.254")
    return "http://" + host.rstrip("/")


def gcp_token():
    url = gce_metadata_base() + "/computeMetadata/v1/instance/service-accounts/default/token"
    status, body = http("GET", url, {"Metadata-Flavor": "Google"})
    if status != 200:
        raise Retry(f"metadata server token: HTTP {status} (is a service account attached?)")
    return json.loads(body)["access_token"]


def gcp_secret_id(name):
    """The secret's id from its name: the same mapping as clusterctl's GCP provider."""
    return "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in name)


def gcp_secret_manager_fetch(config, names):
    """Each name is `projects/P/secrets/<name>`; its version 1 is read (clusterctl creates
    every secret with exactly one version, and access by number is strongly consistent)."""
    token = gcp_token()
    base = config["endpoint"].rstrip("/")
    out = {}
    for name in sorted(set(names)):
        project_part, _, secret = name.rpartition("/secrets/")
        url = f"{base}/v1/{project_part}/secrets/{gcp_secret_id(secret)}/versions/1:access"
        status, answer = http("GET", url, {"Authorization": f"Bearer {token}"})
        if status != 200:
            try:
                err = json.loads(answer).get("error", {})
                text = f"{err.get('status', '')} {err.get('message', '')}".strip()
            except ValueError:
                text = ""
            # Denied or not found right after launch: the grant may still be propagating.
            raise Retry(f"secretmanager access {gcp_secret_id(secret)}: HTTP {status} {text}".strip())
        out[name] = base64.b64decode(json.loads(answer)["payload"]["data"]).decode()
    return out


STORES = {"aws-ssm": aws_ssm_fetch, "gcp-secret-manager": gcp_secret_manager_fetch}


def write(base, relative, mode, value):
    parts = relative.split("/")
    if relative.startswith("/") or ".." in parts or "" in parts:
        raise SystemExit(f"clusterctl: refusing to write {relative!r} outside {base}")
    path = os.path.join(base, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    os.chmod(tmp, int(mode, 8))
    os.replace(tmp, path)


def main():
    config_path = os.path.abspath(sys.argv[1])
    with open(config_path) as f:
        config = json.load(f)
    fetch = STORES.get(config["store"])
    if fetch is None:
        log(f"unknown secret store {config['store']!r}")
        return 1
    files = config["files"]
    names = [spec["name"] for spec in files.values()]
    deadline = time.monotonic() + float(config.get("deadline_seconds", 600))
    delay, last = 1.0, None
    while True:
        try:
            values = fetch(config, names)
            break
        except Retry as e:
            if str(e) != last:
                log(f"waiting for the node's keys: {e}")
                last = str(e)
            if time.monotonic() + delay > deadline:
                log(f"gave up fetching the node's keys from {config['store']} after"
                    f" {config.get('deadline_seconds')} s: {e}")
                return 1
            time.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, 10.0)
    base = os.path.dirname(config_path)
    for relative, spec in files.items():
        write(base, relative, spec["mode"], values[spec["name"]])
    log(f"fetched {len(files)} key file(s) from {config['store']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
