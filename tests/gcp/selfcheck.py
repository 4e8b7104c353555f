#!/usr/bin/env python3
"""Self-check of the Google Compute Engine simulator (root; about 40 s; plain asserts).

    $PY tests/gcp/selfcheck.py [--keep]

Re-runs itself inside `unshare -n` (lo up, holding 10.0.0.0/8: the tests' sandbox), starts
`gce_sim.py serve` as a test would, and drives it over HTTPS: the ready line and the key file;
tokens (self-signed JWT as google-cloud-auth sends, the JWT-bearer grant, the authorized-user
refresh grant, the STS exchange, 401s); catalog reads (machine type not offered → 404, COS
image family, region quotas); the refusals the real API makes (unknown field, missing name,
bad enum, bad name, bulkInsert with a machine-type URL → INTERNAL_ERROR in the operation);
firewalls; a cluster: a service account (403 while it propagates), a secret readable only by it,
a scheduler booted through vmboot from cloud-init rendered from the real templates whose
preload fetches the secret with the metadata server's token, workers from one bulkInsert
(namePattern numbering, minCount), Dask computing through the external address once a firewall
rule admits the client (dropped before), serial port output, label filters and aggregatedList;
requestId dedup; stockout and quota errors inside operations; 403 rateLimitExceeded;
maxRunDuration deleting an instance with no client; deletion; SIGTERM → exit 0; and
sim-errors.jsonl holding exactly the expected refusals.
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ROOT = "/etc/clusterctl"
P = "clusterctl-sim"
Z = "us-central1-a"
CP = f"/compute/v1/projects/{P}"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class Api:
    def __init__(self, url, ca_file, token=None):
        u = urllib.parse.urlparse(url)
        self.host, self.port, self.token = u.hostname, u.port, token
        self.ctx = ssl.create_default_context(cafile=ca_file)

    def call(self, method, path, body=None, token="default", form=None, query=None):
        token = self.token if token == "default" else token
        q = {"$alt": "json"}
        q.update(query or {})
        if not path.startswith("/_sim") and path not in ("/token", "/v1/token"):
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode(q)
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=60)
        headers = {"x-goog-api-client": "gl-rust/1.88.0 gax/1.0.0 gccl/3.4.0"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        payload = r.read()
        conn.close()
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = payload.decode(errors="replace")
        return r.status, parsed


def step(msg):
    print(f"  ok  {msg}", flush=True)


def wait_for(what, fn, seconds, every=0.2):
    end = time.monotonic() + seconds
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(every)


def _try(fn):
    try:
        return fn()
    except OSError:
        return None


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(key_file, claims):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    k = json.load(open(key_file))
    key = serialization.load_pem_private_key(k["private_key"].encode(), None)
    head = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": k["private_key_id"]}).encode())
    now = int(time.time())
    body = b64url(json.dumps(dict({"iss": k["client_email"], "sub": k["client_email"],
                                   "iat": now - 10, "exp": now + 3600}, **claims)).encode())
    sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64url(sig)}"


def wait_op(api, op, seconds=20):
    scope = op.get("zone") or op.get("region")
    if scope:
        kind = "zones" if op.get("zone") else "regions"
        path = f"{CP}/{kind}/{scope.rsplit('/', 1)[-1]}/operations/{op['name']}"
    else:
        path = f"{CP}/global/operations/{op['name']}"
    st, out = api.call("POST", path + "/wait")
    assert st == 200 and out["name"] == op["name"], (st, out)
    if out["status"] != "DONE":
        out = wait_for("operation DONE", lambda: (lambda r: r if r["status"] == "DONE" else None)
                       (api.call("GET", path)[1]), seconds)
    return out


# ----- user-data rendered from the real templates (as bootstrap.rs does) -----

def shell_quote(value):
    safe = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@%+,")
    return value if value and all(c in safe for c in value) else \
        "'" + value.replace("'", "'\\''") + "'"


def render(role, argv, env, files, version):
    import jinja2
    jenv = jinja2.Environment(keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    jenv.filters["shell_quote"] = shell_quote

    def template(name):
        with open(os.path.join(REPO, "templates", name), encoding="utf-8") as fh:
            return jenv.from_string(fh.read())
    script = template("node-run.sh.j2").render(
        role=role, cluster="selfcheck", ttl_minutes=30, install_docker=True, gpu=False,
        root=ROOT, image=f"ghcr.io/dask/dask:{version}-py3.12", argv=argv, fetch=None,
        fetch_script=None)
    env_text = "".join(f"{k}={v}\n" for k, v in sorted(env.items()))
    entries = list(files) + [(f"{ROOT}/dask.env", env_text, "0600"),
                             (f"{ROOT}/run.sh", script, "0700")]
    return template("cloud-init.yaml.j2").render(
        role=role, cluster="selfcheck", root=ROOT,
        files=[{"path": p, "mode": m, "b64": base64.b64encode(c.encode()).decode()}
               for p, c, m in entries])


PRELOAD = '''
"""selfcheck preload: fetch a secret the way a node would (metadata-server token, then
Secret Manager), binding the source address to this VM's IP; print only its digest."""
import hashlib, http.client, json, os, ssl, sys, base64, urllib.parse

def dask_setup(scheduler):
    ip = sys.argv[sys.argv.index("--host") + 1]
    md = http.client.HTTPConnection("169.254.169.254", 80, timeout=10, source_address=(ip, 0))
    md.request("GET", "/computeMetadata/v1/instance/service-accounts/default/token",
               headers={"Metadata-Flavor": "Google"})
    tok = json.loads(md.getresponse().read())["access_token"]
    u = urllib.parse.urlparse(os.environ["SELFCHECK_SECRET_URL"])
    c = http.client.HTTPSConnection(u.hostname, u.port, timeout=10,
                                    context=ssl.create_default_context())
    c.request("GET", u.path + "?$alt=json", headers={"Authorization": "Bearer " + tok})
    r = c.getresponse()
    body = json.loads(r.read())
    data = base64.b64decode(body["payload"]["data"])
    print("selfcheck-secret: status=%d sha256=%s" % (r.status, hashlib.sha256(data).hexdigest()),
          flush=True)
'''


def scheduler_user_data(version, secret_url):
    argv = ["dask", "scheduler", "--host", "0.0.0.0", "--port", "8786", "--dashboard-address",
            "0.0.0.0:8787", "--preload", f"{ROOT}/selfcheck_preload.py", "--idle-timeout",
            "600s"]
    return render("scheduler", argv, {"SELFCHECK_SECRET_URL": secret_url},
                  [(f"{ROOT}/selfcheck_preload.py", PRELOAD, "0644")], version)


def worker_user_data(version, scheduler_ip):
    argv = ["dask", "worker", f"tcp://{scheduler_ip}:8786", "--host", "0.0.0.0",
            "--no-dashboard", "--death-timeout", "60s", "--no-nanny", "--nthreads", "1"]
    return render("worker", argv, {"CLUSTERCTL_CLUSTER": "selfcheck"}, [], version)


def instance_body(name, user_data=None, external=False, sa=None, labels=None, tags=None,
                  machine=f"zones/{Z}/machineTypes/e2-standard-2", scheduling=None, ip=None):
    nic = {"network": "global/networks/default"}
    if external:
        nic["accessConfigs"] = [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]
    if ip:
        nic["networkIP"] = ip
    body = {"name": name, "machineType": machine,
            "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
                "sourceImage": "projects/cos-cloud/global/images/family/cos-stable",
                "diskSizeGb": "20"}}],
            "networkInterfaces": [nic], "labels": labels or {"clusterctl-cluster": "selfcheck"},
            "tags": {"items": tags or ["clusterctl-selfcheck"]}}
    if user_data:
        body["metadata"] = {"items": [{"key": "user-data", "value": user_data}]}
    if sa:
        body["serviceAccounts"] = [{"email": sa, "scopes": [SCOPE]}]
    if scheduling:
        body["scheduling"] = scheduling
    return body


def http_get(ip, port, path, timeout):
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


# ----- the checks -----

def check_auth(api, ready, work):
    creds = json.load(open(ready["credentials_file"]))
    assert creds["type"] == "service_account" and creds["token_uri"] == ready["token_uri"]
    assert creds["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    st, body = api.call("GET", f"{CP}", token=None)
    assert st == 401 and body["error"]["status"] == "UNAUTHENTICATED" and \
        body["error"]["errors"][0]["reason"] == "required", body
    assert api.call("GET", f"{CP}", token="ya29.nope")[0] == 401
    self_signed = sign_jwt(ready["credentials_file"], {"scope": SCOPE})
    st, body = api.call("GET", f"{CP}", token=self_signed)
    assert st == 200 and body["name"] == P, (st, body)
    st, tok = api.call("POST", "/token", token=None, form={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": sign_jwt(ready["credentials_file"], {"scope": SCOPE,
                                                          "aud": ready["token_uri"]})})
    assert st == 200 and tok["token_type"] == "Bearer" and tok["expires_in"] > 3000, (st, tok)
    st, bad = api.call("POST", "/token", token=None, form={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": self_signed[:-6] + "AAAAAA"})
    assert st == 400 and bad["error"] == "invalid_grant", bad
    user = json.load(open(os.path.join(work, "authorized_user.json")))
    st, ut = api.call("POST", "/token", token=None, body={
        "grant_type": "refresh_token", "client_id": user["client_id"],
        "client_secret": user["client_secret"], "refresh_token": user["refresh_token"]})
    assert st == 200 and api.call("GET", f"{CP}/zones/{Z}", token=ut["access_token"])[0] == 200
    ext = json.load(open(os.path.join(work, "external_account.json")))
    st, sts = api.call("POST", "/v1/token", token=None, form={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "subject_token": open(ext["credential_source"]["file"]).read(),
        "subject_token_type": ext["subject_token_type"], "audience": ext["audience"],
        "scope": SCOPE})
    assert st == 200 and sts["issued_token_type"].endswith("access_token"), (st, sts)
    assert api.call("GET", f"{CP}/regions/us-central1", token=sts["access_token"])[0] == 200
    forged = open(ext["credential_source"]["file"]).read().rsplit(".", 1)[0] + ".AAAA"
    st, bad = api.call("POST", "/v1/token", token=None, form={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "subject_token": forged, "subject_token_type": ext["subject_token_type"],
        "audience": ext["audience"], "scope": SCOPE})
    assert st == 400 and bad["error"] == "invalid_grant", (st, bad)
    # google-github-actions/auth's shape: URL source, then impersonation.
    gha = json.load(open(os.path.join(work, "external_account_url.json")))
    src = urllib.parse.urlsplit(gha["credential_source"]["url"])
    request_token = gha["credential_source"]["headers"]["Authorization"].split(" ", 1)[1]
    st, oidc = api.call("GET", f"{src.path}?{src.query}", token=request_token)
    assert st == 200 and oidc["value"].count(".") == 2, (st, oidc)
    st, fed = api.call("POST", "/v1/token", token=None, form={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "subject_token": oidc["value"], "subject_token_type": gha["subject_token_type"],
        "audience": gha["audience"], "scope": SCOPE})
    assert st == 200, (st, fed)
    assert api.call("GET", f"{CP}/regions/us-central1", token=fed["access_token"])[0] == 403
    imp = urllib.parse.urlsplit(gha["service_account_impersonation_url"]).path
    st, sa_tok = api.call("POST", imp, token=fed["access_token"],
                          body={"scope": [SCOPE], "lifetime": "3600s"})
    assert st == 200 and sa_tok["expireTime"].endswith("Z"), (st, sa_tok)
    assert api.call("GET", f"{CP}/regions/us-central1", token=sa_tok["accessToken"])[0] == 200
    assert api.call("POST", imp, token=sts["access_token"], body={"scope": [SCOPE]})[0] == 403
    api.token = tok["access_token"]
    step("credentials.json (PKCS#8, token_uri); 401 UNAUTHENTICATED; self-signed JWT bearer; "
         "jwt-bearer grant (bad signature → invalid_grant); refresh grant; STS exchange (forged "
         "subject → invalid_grant); URL-sourced subject + generateAccessToken")


def check_catalog(api):
    st, r = api.call("GET", f"{CP}/regions/us-central1")
    q = {x["metric"]: x["limit"] for x in r["quotas"]}
    assert q["CPUS"] == 24.0 and "IN_USE_ADDRESSES" in q and "INSTANCES" in q, q
    assert api.call("GET", f"{CP}/zones/us-east1-d/machineTypes/c3-standard-4")[0] == 404
    assert api.call("GET", f"{CP}/zones/{Z}/machineTypes/c3-standard-4")[0] == 200
    st, mts = api.call("GET", f"{CP}/aggregated/machineTypes?filter=name%20%3D%20g2-standard-4")
    assert "machineTypes" in mts["items"]["zones/us-central1-a"], mts["items"]["zones/us-east1-b"]
    assert "warning" in mts["items"]["zones/us-east1-b"]
    st, img = api.call("GET", "/compute/v1/projects/cos-cloud/global/images/family/cos-stable")
    assert st == 200 and img["family"] == "cos-stable" and img["status"] == "READY", img
    st, net = api.call("GET", f"{CP}/global/networks/default")
    assert net["autoCreateSubnetworks"] is True
    st, sub = api.call("GET", f"{CP}/regions/us-central1/subnetworks/default")
    assert sub["ipCidrRange"] == "10.128.0.0/20"
    st, fws = api.call("GET", f"{CP}/global/firewalls")
    assert {f["name"] for f in fws["items"]} >= {"default-allow-internal", "default-allow-ssh"}
    step("region quotas; c3-standard-4 not offered in us-east1-d (404); aggregated machine "
         "types with NO_RESULTS_ON_PAGE; cos-stable family; default network, subnet, rules")


def check_negative(api, expected):
    base = instance_body("neg-ok")
    cases = [
        ("unknown field", dict(base, userData="x"), "Unknown name \"userData\"",
         ("compute.instances.insert", "unknown")),
        ("missing name", {k: v for k, v in base.items() if k != "name"},
         "Required field 'resource.name'", ("compute.instances.insert", "required")),
        ("bad enum", dict(base, scheduling={"provisioningModel": "SPOTTY"}), "SPOTTY",
         ("compute.instances.insert", "enum")),
        ("bad name", dict(base, name="Bad_Name"), "Invalid value for field 'resource.name'",
         ("compute.instances.insert", "pattern")),
        ("int64 as number", dict(base, scheduling={"maxRunDuration": {"seconds": 60},
                                                   "instanceTerminationAction": "DELETE"}),
         "maxRunDuration", ("compute.instances.insert", "type")),
        ("type not offered", dict(base, machineType=f"zones/{Z}/machineTypes/x9-huge"),
         "does not exist in zone", None),
        ("termination action on standard", dict(base, scheduling={
            "instanceTerminationAction": "DELETE"}), "standard provisioning model", None),
        ("bad label", dict(base, labels={"Cluster": "x"}), "Label keys", None),
    ]
    for what, body, msg, err in cases:
        st, out = api.call("POST", f"{CP}/zones/{Z}/instances", body)
        assert st == 400 and msg in out["error"]["message"] and out["error"]["status"] == \
            "INVALID_ARGUMENT", (what, st, out)
        if err:
            expected.append(err)
    st, out = api.call("POST", f"{CP}/zones/{Z}/instances?bogus=1", base)
    assert st == 400 and "Cannot bind query parameter" in out["error"]["message"], out
    expected.append(("compute.instances.insert", "unknown"))
    st, out = api.call("GET", f"{CP}/zones/Bad_Zone/instances")
    assert st == 400, out
    expected.append(("compute.instances.list", "pattern"))
    assert api.call("POST", f"{CP}/zones/{Z}/instances", base,
                    query={"requestId": "not-a-uuid"})[0] == 400
    props = {k: v for k, v in instance_body("x", machine=f"zones/{Z}/machineTypes/e2-medium")
             .items() if k != "name"}
    st, op = api.call("POST", f"{CP}/zones/{Z}/instances/bulkInsert",
                      {"count": "2", "namePattern": "neg-####", "instanceProperties": props})
    assert st == 200, (st, op)
    op = wait_op(api, op)
    assert op["error"]["errors"][0]["code"] == "INTERNAL_ERROR", op
    assert op["instancesBulkInsertOperationMetadata"]["perLocationStatus"][f"zones/{Z}"][
        "failedToCreateVmCount"] == 2, op
    st, lst = api.call("GET", f"{CP}/zones/{Z}/instances")
    assert "items" not in lst, lst
    step("refused: " + ", ".join(c[0] for c in cases) + ", unknown query parameter, bad zone, "
         "non-UUID requestId; bulkInsert with a machine-type URL → 200, op INTERNAL_ERROR, "
         "nothing created")


def check_cluster(api, ready, version, expected):
    assert api.call("POST", "/_sim/mark", {"phase": "up"}, token=None)[0] == 200
    st, sa = api.call("POST", f"/v1/projects/{P}/serviceAccounts", {
        "accountId": "selfcheck-nodes", "serviceAccount": {"displayName": "selfcheck nodes"}})
    assert st == 200 and sa["email"] == f"selfcheck-nodes@{P}.iam.gserviceaccount.com", sa
    email = sa["email"]
    st, early = api.call("GET", f"/v1/projects/{P}/serviceAccounts/{email}")
    assert st == 403 and early["error"]["status"] == "PERMISSION_DENIED", early
    st, sec = api.call("POST", f"/v1/projects/{P}/secrets?secretId=selfcheck-key",
                       {"replication": {"automatic": {}}, "labels": {"clusterctl-cluster":
                                                                     "selfcheck"}})
    assert st == 200 and sec["name"].startswith("projects/") and P not in sec["name"], sec
    payload = os.urandom(512)
    st, ver = api.call("POST", f"/v1/projects/{P}/secrets/selfcheck-key:addVersion",
                       {"payload": {"data": base64.b64encode(payload).decode()}})
    assert st == 200 and ver["name"].endswith("/versions/1"), ver
    policy = {"policy": {"bindings": [{"role": "roles/secretmanager.secretAccessor",
                                       "members": [f"serviceAccount:{email}"]}]}}
    st, out = api.call("POST", f"/v1/projects/{P}/secrets/selfcheck-key:setIamPolicy", policy)
    assert st == 400 and "does not exist" in out["error"]["message"], (st, out)
    wait_for("the service account to propagate", lambda: api.call(
        "GET", f"/v1/projects/{P}/serviceAccounts/{email}")[0] == 200, 10)
    st, pol = api.call("POST", f"/v1/projects/{P}/secrets/selfcheck-key:setIamPolicy", policy)
    assert st == 200 and pol["bindings"][0]["members"] == [f"serviceAccount:{email}"], pol
    st, got = api.call("GET", f"/v1/projects/{P}/secrets/selfcheck-key:getIamPolicy")
    assert st == 200 and got["etag"] == pol["etag"]
    step("service account: 403 while propagating, setIamPolicy 400 'does not exist' then OK; "
         "secret named by project number; version 1")

    secret_url = f"{ready['url']}/v1/projects/{P}/secrets/selfcheck-key/versions/1:access"
    sched_ip = "10.128.0.10"
    rid = str(uuid.uuid4())
    body = instance_body("sc-scheduler", scheduler_user_data(version, secret_url), external=True,
                         sa=email, ip=sched_ip, labels={"clusterctl-cluster": "selfcheck",
                                                        "clusterctl-role": "scheduler"})
    st, op1 = api.call("POST", f"{CP}/zones/{Z}/instances", body, query={"requestId": rid})
    assert st == 200 and op1["status"] in ("PENDING", "RUNNING") and op1["name"], op1
    st, again = api.call("POST", f"{CP}/zones/{Z}/instances", body, query={"requestId": rid})
    assert st == 200 and again["name"] == op1["name"], (op1, again)
    st, dup = api.call("POST", f"{CP}/zones/{Z}/instances", body)
    assert st == 409 and dup["error"]["errors"][0]["reason"] == "alreadyExists", dup
    props = {k: v for k, v in instance_body("w", worker_user_data(version, sched_ip),
                                            machine="e2-standard-2",
                                            labels={"clusterctl-cluster": "selfcheck",
                                                    "clusterctl-role": "worker"}).items()
             if k != "name"}
    st, bop = api.call("POST", f"{CP}/zones/{Z}/instances/bulkInsert",
                       {"count": "2", "minCount": "2", "namePattern": "sc-worker-####",
                        "instanceProperties": props}, query={"requestId": str(uuid.uuid4())})
    assert st == 200, bop
    op1, bop = wait_op(api, op1), wait_op(api, bop)
    assert "error" not in op1 and "error" not in bop, (op1, bop)
    st_ = bop["instancesBulkInsertOperationMetadata"]["perLocationStatus"][f"zones/{Z}"]
    assert st_["createdVmCount"] == 2, st_
    st, inst = api.call("GET", f"{CP}/zones/{Z}/instances/sc-scheduler")
    assert inst["status"] == "RUNNING" and inst["networkInterfaces"][0]["networkIP"] == sched_ip
    ext = inst["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
    st, lst = api.call("GET", f"{CP}/zones/{Z}/instances?filter=" + urllib.parse.quote(
        'labels.clusterctl-cluster = "selfcheck" AND labels.clusterctl-role = "worker"'))
    names = sorted(i["name"] for i in lst["items"])
    assert names == ["sc-worker-0001", "sc-worker-0002"], names
    assert all("accessConfigs" not in i["networkInterfaces"][0] for i in lst["items"])
    step(f"insert with requestId (same op twice, 409 on a plain retry); bulkInsert "
         f"namePattern → {names}; label filter with AND; scheduler {sched_ip} external {ext}")

    st, h = wait_for("/health on the internal address",
                     lambda: _try(lambda: http_get(sched_ip, 8787, "/health", 2)), 40, 0.3)
    assert (st, h) == (200, "ok")
    assert _try(lambda: http_get(ext, 8787, "/health", 2)) is None, \
        "no firewall rule admits 10.0.0.0 yet: the external port must not answer"
    st, fop = api.call("POST", f"{CP}/global/firewalls", {
        "name": "selfcheck-clients", "network": "global/networks/default",
        "direction": "INGRESS", "priority": 1000, "targetTags": ["clusterctl-selfcheck"],
        "sourceRanges": ["10.0.0.0/32"], "allowed": [{"IPProtocol": "tcp",
                                                      "ports": ["8786-8787"]}]},
        query={"requestId": str(uuid.uuid4())})
    assert st == 200 and "zone" not in fop, fop
    assert wait_op(api, fop)["status"] == "DONE"
    st, h = wait_for("/health on the external address",
                     lambda: _try(lambda: http_get(ext, 8787, "/health", 2)), 10, 0.3)
    assert (st, h) == (200, "ok")
    st, fl = api.call("GET", f"{CP}/global/firewalls?filter=" + urllib.parse.quote(
        'name = "selfcheck-*"'))
    assert [f["name"] for f in fl["items"]] == ["selfcheck-clients"], fl
    step("Dask /health on the internal IP; external 8787 dropped (no rule for 10.0.0.0), "
         "allowed after a firewall rule (global op) on the cluster's tag; filter by name")

    from distributed import Client
    with Client(f"tcp://{ext}:8786", timeout=30) as client:
        client.wait_for_workers(2, timeout=40)
        assert client.submit(lambda x: x + 1, 41).result(timeout=30) == 42
    step("a Dask client through external:8786 computed on the bulk-inserted workers")

    digest = hashlib.sha256(payload).hexdigest()
    st, ser = api.call("GET", f"{CP}/zones/{Z}/instances/sc-scheduler/serialPort?port=1")
    assert f"selfcheck-secret: status=200 sha256={digest}" in ser["contents"], \
        ser["contents"][-1500:]
    assert "Scheduler at" in ser["contents"] and int(ser["next"]) >= len(ser["contents"])
    st, more = api.call("GET", f"{CP}/zones/{Z}/instances/sc-scheduler/serialPort?start="
                        + ser["next"])
    assert more["start"] == ser["next"], more
    inv = api.call("GET", "/_sim/inventory", token=None)[1]
    sec = [s for s in inv["secrets"] if s["secret"] == "selfcheck-key"][0]
    assert sec["accessed_by"] == [f"serviceAccount:{email}"], sec
    step("the scheduler's preload fetched the secret with its metadata-server token (serial "
         "port shows its digest, not the value); serial start/next")

    wip = [i for i in inv["instances"] if i["name"] == "sc-worker-0001"][0]["internal_ip"]
    conn = http.client.HTTPConnection("169.254.169.254", 80, timeout=5,
                                      source_address=(wip, 0))
    conn.request("GET", "/computeMetadata/v1/instance/service-accounts/default/token",
                 headers={"Metadata-Flavor": "Google"})
    assert conn.getresponse().status == 404, "no service account on the worker → 404"
    conn = http.client.HTTPConnection("169.254.169.254", 80, timeout=5,
                                      source_address=(wip, 0))
    conn.request("GET", "/computeMetadata/v1/instance/attributes/user-data")
    assert conn.getresponse().status == 403, "no Metadata-Flavor → 403"
    conn = http.client.HTTPConnection("169.254.169.254", 80, timeout=5,
                                      source_address=(wip, 0))
    conn.request("GET", "/computeMetadata/v1/instance/hostname",
                 headers={"Metadata-Flavor": "Google"})
    assert conn.getresponse().read().decode() == f"sc-worker-0001.{Z}.c.{P}.internal"
    st, agg = api.call("GET", f"{CP}/aggregated/instances?filter=" + urllib.parse.quote(
        'labels.clusterctl-cluster = "selfcheck"'))
    assert len(agg["items"][f"zones/{Z}"]["instances"]) == 3 and \
        "warning" in agg["items"]["zones/us-east1-b"], agg
    step("metadata server: worker without service account → 404 token, no Metadata-Flavor → "
         "403, hostname; aggregatedList across zones with the label filter")
    return email, ext


def check_faults(api, expected):
    assert api.call("POST", "/_sim/mark", {"phase": "faults"}, token=None)[0] == 200
    api.call("POST", "/_sim/stockouts", {"zone": "us-central1-b", "provisioningModel": "SPOT"},
             token=None)
    spot = {"provisioningModel": "SPOT", "instanceTerminationAction": "DELETE"}
    body = instance_body("sc-spot", machine="zones/us-central1-b/machineTypes/e2-standard-2",
                         scheduling=spot)
    st, op = api.call("POST", f"{CP}/zones/us-central1-b/instances", body)
    assert st == 200, op
    op = wait_op(api, op)
    e = op["error"]["errors"][0]
    assert e["code"] == "ZONE_RESOURCE_POOL_EXHAUSTED" and "us-central1-b" in e["message"], op
    assert api.call("GET", f"{CP}/zones/us-central1-b/instances/sc-spot")[0] == 404
    api.call("POST", "/_sim/quota", {"metric": "CPUS", "limit": 8}, token=None)
    body = instance_body("sc-big", machine="zones/us-central1-c/machineTypes/e2-standard-4")
    st, op = api.call("POST", f"{CP}/zones/us-central1-c/instances", body)
    op = wait_op(api, op)
    api.call("POST", "/_sim/quota", {"metric": "CPUS", "limit": 24}, token=None)
    e = op["error"]["errors"][0]
    assert e["code"] == "QUOTA_EXCEEDED" and "Quota 'CPUS' exceeded" in e["message"] and \
        e["errorDetails"][0]["quotaInfo"]["dimensions"] == {"region": "us-central1"}, op
    assert op["httpErrorStatusCode"] == 403
    step("stockout (SPOT in us-central1-b) and CPUS quota: 200, then DONE with "
         "ZONE_RESOURCE_POOL_EXHAUSTED / QUOTA_EXCEEDED (metric, region) in the operation")
    api.call("POST", "/_sim/faults", {"method": "GET", "path": "/zones$", "status": 503,
                                      "count": 1}, token=None)
    st, body = api.call("GET", f"{CP}/zones")
    assert st == 503 and body["error"]["status"] == "UNAVAILABLE", body
    api.call("POST", "/_sim/faults", {"method": "GET", "path": "/zones$", "status": 429,
                                      "count": 1}, token=None)
    assert api.call("GET", f"{CP}/zones")[0] == 429
    assert api.call("GET", f"{CP}/zones")[0] == 200
    api.call("POST", "/_sim/ratelimit", {"write": 0}, token=None)
    st, body = api.call("POST", f"{CP}/zones/{Z}/instances", instance_body("sc-limited"))
    assert st == 403 and body["error"]["errors"][0]["reason"] == "rateLimitExceeded", body
    api.call("POST", "/_sim/ratelimit", {"write": 1500}, token=None)
    step("faults 503/429; 403 rateLimitExceeded (not 429) when the write bucket is empty")


def check_ttl_and_down(api, email):
    assert api.call("POST", "/_sim/mark", {"phase": "ttl"}, token=None)[0] == 200
    body = instance_body("sc-ttl", scheduling={"provisioningModel": "STANDARD",
                                               "instanceTerminationAction": "DELETE",
                                               "maxRunDuration": {"seconds": "30"}})
    st, op = api.call("POST", f"{CP}/zones/{Z}/instances", body)
    assert wait_op(api, op).get("error") is None
    st, inst = api.call("GET", f"{CP}/zones/{Z}/instances/sc-ttl")
    assert inst["scheduling"]["maxRunDuration"] == {"seconds": "30"}
    wait_for("maxRunDuration deletion", lambda: api.call(
        "GET", f"{CP}/zones/{Z}/instances/sc-ttl")[0] == 404, 15, 0.3)
    inv = api.call("GET", "/_sim/inventory", token=None)[1]
    gone = [d for d in inv["deleted_instances"] if d["name"] == "sc-ttl"]
    assert gone and gone[0]["why"] == "maxRunDuration", gone
    step("maxRunDuration 30 s (scaled ×0.1) with DELETE: the simulator deleted the instance")

    assert api.call("POST", "/_sim/mark", {"phase": "down"}, token=None)[0] == 200
    st, lst = api.call("GET", f"{CP}/aggregated/instances?filter=" + urllib.parse.quote(
        'labels.clusterctl-cluster = "selfcheck"'))
    ops = []
    for scope, v in lst["items"].items():
        for i in v.get("instances", []):
            st, op = api.call("DELETE", f"{CP}/{scope}/instances/{i['name']}",
                              query={"requestId": str(uuid.uuid4())})
            assert st == 200, op
            ops.append(op)
    for op in ops:
        assert wait_op(api, op).get("error") is None
    assert api.call("DELETE", f"{CP}/zones/{Z}/instances/sc-scheduler")[0] == 404
    op = api.call("DELETE", f"{CP}/global/firewalls/selfcheck-clients")[1]
    wait_op(api, op)
    assert api.call("DELETE", f"/v1/projects/{P}/secrets/selfcheck-key")[0] == 200
    assert api.call("DELETE", f"/v1/projects/{P}/serviceAccounts/{email}")[0] == 200
    inv = wait_for("processes stopped", lambda: (lambda i: i if all(
        not n["alive"] for n in i["runtime_nodes"]) else None)(
        api.call("GET", "/_sim/inventory", token=None)[1]), 15, 0.3)
    assert inv["instances"] == [] and not [f for f in inv["firewalls"]
                                           if f["name"].startswith("selfcheck")]
    assert inv["secrets"] == [] and inv["service_accounts"] == []
    summary = api.call("GET", "/_sim/requests/summary", token=None)[1]
    assert summary["down"]["by_operation"].get("compute.instances.delete") == 4, summary["down"]
    step("down: delete by label via aggregatedList (ops DONE, then 404), firewall, secret, "
         "service account; processes stopped; nothing left; requests counted per phase")


def inside(keep):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", "10.0.0.0/8", "dev", "lo"], check=True)
    import distributed
    work = tempfile.mkdtemp(prefix="gce-selfcheck-")
    cmd = [sys.executable, os.path.join(HERE, "gce_sim.py"), "serve", "--workdir", work,
           "--python", sys.executable, "--op-delay", "0.6", "--op-pending", "0.2",
           "--delete-delay", "0.4", "--firewall-delay", "0.3", "--run-duration-scale", "0.1",
           "--sa-propagation", "1.5", "--iam-propagation", "0.5", "--drop-hold", "5"]
    stderr = open(os.path.join(work, "sim.stderr"), "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)
    ok = False
    try:
        ready = json.loads(proc.stdout.readline())
        assert set(ready) == {"ready", "url", "ca_file", "credentials_file", "token_uri",
                              "metadata"} and ready["metadata"] == "http://169.254.169.254", ready
        api = Api(ready["url"], ready["ca_file"])
        step(f"ready line: {ready['url']}, metadata {ready['metadata']}")
        expected = []
        check_auth(api, ready, work)
        check_catalog(api)
        check_negative(api, expected)
        email, _ = check_cluster(api, ready, distributed.__version__, expected)
        check_faults(api, expected)
        check_ttl_and_down(api, email)
        proc.send_signal(15)
        assert proc.wait(timeout=30) == 0, "SIGTERM → exit 0"
        step("SIGTERM → exit 0")
        path = os.path.join(work, "sim-errors.jsonl")
        errors = [json.loads(x) for x in open(path)] if os.path.exists(path) else []
        got = [(e.get("operation"), e["problems"][0]["kind"]) for e in errors
               if e["kind"] == "request-invalid"]
        others = [e for e in errors if e["kind"] != "request-invalid"]
        assert sorted(got) == sorted(expected) and not others, (got, expected, others)
        agent = os.path.join(work, "agent-errors.jsonl")
        assert not os.path.exists(agent) or not open(agent).read().strip(), open(agent).read()
        log = open(os.path.join(work, "requests.jsonl")).read()
        assert "PRIVATE KEY" not in log and "ya29.sim-" not in log and "sim-oidc-" not in log
        assert '"data":"<redacted' in log, "the secret payload is redacted in requests.jsonl"
        step(f"sim-errors.jsonl holds exactly the {len(expected)} expected spec refusals; "
             "agent-errors.jsonl empty")
        ok = True
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if ok and not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"workdir kept: {work}", flush=True)
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not args.inside:
        if os.geteuid() != 0:
            sys.exit("selfcheck.py needs root (it runs in its own network namespace: unshare -n)")
        t0 = time.monotonic()
        cmd = ["unshare", "-n", sys.executable, os.path.abspath(__file__), "--inside"]
        rc = subprocess.call(cmd + (["--keep"] if args.keep else []))
        left = subprocess.run(["pgrep", "-f", "gce-selfcheck-"], capture_output=True,
                              text=True).stdout.split()
        print(f"{'PASS' if rc == 0 and not left else 'FAIL'} in {time.monotonic() - t0:.1f} s"
              + (f"; stray processes {left}" if left else ""), flush=True)
        sys.exit(rc or (1 if left else 0))
    print("GCE simulator self-check (inside unshare -n)", flush=True)
    sys.exit(0 if inside(args.keep) else 1)


if __name__ == "__main__":
    main()
