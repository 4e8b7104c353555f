#!/usr/bin/env python3
"""Self-check of the DigitalOcean simulator (root; about 30-40 s; plain asserts, no pytest).

    $PY tests/digitalocean/selfcheck.py [--keep]

Re-runs itself inside `unshare -n` (lo up, holding 10.0.0.0/8: the tests' sandbox), starts
`do_sim.py serve` as the harness does, and checks the API contract: auth (401 shape), rate-limit
headers, unknown paths, account/regions/sizes/images/VPCs, SSH keys (fingerprint, duplicate,
the keys-list limit), tags (case-stable, the other 400 body), the negative cases the real API
refuses (unknown field, bad droplet name, size not in region, too many names, invalid image,
unknown SSH key, droplet limit, firewall naming a missing tag), listing lag, pagination, fault
injection, phase marks, power actions, the root-password e-mail event; then one real cluster:
a scheduler and a worker droplet whose user_data is cloud-init rendered from the real templates
(templates/cloud-init.yaml.j2, node-run.sh.j2) and booted through tests/vmboot, the scheduler's
/health reached on its PUBLIC address through the forwarder (with no firewall; dropped by a
firewall that does not allow 10.0.0.0; allowed after a rule is added), a Dask computation
through the public 8786, the console, then DELETE by tag stopping the processes; the per-minute
burst 429; finally SIGTERM → exit 0, and sim-errors.jsonl holds exactly the expected refusals.
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

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TOKEN = "dop_v1_selfcheck"
ROOT = "/etc/clusterctl"
TAG = "selfcheck-cluster"
KEYS_PER_MINUTE = 4
RATE_PER_MINUTE = 150


class Api:
    def __init__(self, url, ca_file):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port
        self.ctx = ssl.create_default_context(cafile=ca_file)

    def call(self, method, path, body=None, token=TOKEN, raw=False):
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=30)
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        payload = r.read()
        conn.close()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if raw:
            return r.status, payload, hdrs
        return r.status, (json.loads(payload) if payload else None), hdrs


def wait_for(what, predicate, seconds, step=0.1):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(step)


def step(msg):
    print(f"  ok  {msg}", flush=True)


# ----- user_data in the exact shape of templates/cloud-init.yaml.j2 -----

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
        root=ROOT, image=f"ghcr.io/dask/dask:{version}-py3.12", argv=argv,
        # DigitalOcean never returns user_data: the keys travel in it, nothing is fetched.
        fetch=False, fetch_script=None, fetch_config=None)
    env_text = "".join(f"{k}={v}\n" for k, v in sorted(env.items()))
    entries = list(files) + [(f"{ROOT}/dask.env", env_text, "0600"),
                             (f"{ROOT}/run.sh", script, "0700")]
    return template("cloud-init.yaml.j2").render(
        role=role, cluster="selfcheck", root=ROOT,
        files=[{"path": p, "mode": m, "b64": base64.b64encode(c.encode()).decode()}
               for p, c, m in entries])


def scheduler_user_data(version):
    with open(os.path.join(REPO, "templates", "scheduler_ttl.py"), encoding="utf-8") as fh:
        preload = fh.read()
    argv = ["dask", "scheduler", "--host", "0.0.0.0", "--port", "8786", "--dashboard-address",
            "0.0.0.0:8787", "--preload", f"{ROOT}/clusterctl_ttl.py", "--idle-timeout", "600s"]
    env = {"CLUSTERCTL_CLUSTER": "selfcheck", "CLUSTERCTL_EXPIRES": str(int(time.time()) + 900)}
    return render("scheduler", argv, env, [(f"{ROOT}/clusterctl_ttl.py", preload, "0644")],
                  version)


def worker_user_data(version, scheduler_ip):
    argv = ["dask", "worker", f"tcp://{scheduler_ip}:8786", "--host", "0.0.0.0",
            "--no-dashboard", "--death-timeout", "60s", "--no-nanny", "--nthreads", "1",
            "--name", "selfcheck-worker-0"]
    env = {"CLUSTERCTL_CLUSTER": "selfcheck", "CLUSTERCTL_EXPIRES": str(int(time.time()) + 900)}
    return render("worker", argv, env, [], version)


def ssh_public_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH,
                            serialization.PublicFormat.OpenSSH).decode()
    blob = base64.b64decode(line.split()[1])
    return line + " selfcheck", ":".join(f"{b:02x}" for b in hashlib.md5(blob).digest())


def http_get(ip, port, path, timeout):
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


def tcp_refused(ip, port):
    try:
        socket.create_connection((ip, port), timeout=2).close()
        return False
    except OSError:
        return True


# ----- the checks -----

def check_api(api, expected_errors):
    """Contract checks that boot nothing. Appends the sim errors they must cause."""
    st, body, h = api.call("GET", "/v2/account", token=None)
    assert st == 401 and body["id"] == "unauthorized" and \
        body["message"] == "Unable to authenticate you." and body.get("request_id"), (st, body)
    assert h.get("ratelimit-limit") == "5000", h
    st, body, _ = api.call("GET", "/v2/account", token="wrong")
    assert st == 401, st
    step("401 unauthorized without or with a wrong bearer token (error shape, rate-limit headers)")
    st, body, h = api.call("GET", "/v2/account")
    assert st == 200 and body["account"]["droplet_limit"] == 6 and "team" in body["account"], body
    assert int(h["ratelimit-remaining"]) < 5000 and int(h["ratelimit-reset"]) > time.time() - 5
    st, body, _ = api.call("GET", "/v2/no/such/thing")
    assert st == 404 and body["id"] == "not_found", body
    step("GET /v2/account; ratelimit-remaining/reset; unknown path → 404 not_found")
    st, body, _ = api.call("GET", "/v2/sizes?per_page=200")
    sizes = {s["slug"]: s for s in body["sizes"]}
    for slug in ("s-2vcpu-4gb", "s-4vcpu-8gb", "g-2vcpu-8gb", "g-4vcpu-16gb", "c-4", "m-2vcpu-16gb"):
        assert slug in sizes, slug
    assert "nyc3" not in sizes["s-2vcpu-4gb"]["regions"] and "nyc1" in sizes["s-2vcpu-4gb"]["regions"]
    st, body, _ = api.call("GET", "/v2/regions")
    assert body["links"] == {} and body["meta"]["total"] == len(body["regions"]), body["links"]
    st, body, _ = api.call("GET", "/v2/images?type=application")
    assert [(i["slug"], i["name"]) for i in body["images"]] == [("docker-20-04", "Docker on Ubuntu 22.04")]
    st, body, _ = api.call("GET", "/v2/images?type=distribution&per_page=1")
    assert len(body["images"]) == 1 and "next" in body["links"]["pages"], body["links"]
    st, body, _ = api.call("GET", "/v2/images/ubuntu-24-04-x64")
    assert st == 200 and body["image"]["slug"] == "ubuntu-24-04-x64"
    st, img_by_id, _ = api.call("GET", f"/v2/images/{body['image']['id']}")
    assert img_by_id["image"]["slug"] == "ubuntu-24-04-x64"
    st, body, _ = api.call("GET", "/v2/vpcs?per_page=200")
    nyc1 = [v for v in body["vpcs"] if v["region"] == "nyc1"]
    assert len(nyc1) == 1 and nyc1[0]["default"] is True and nyc1[0]["ip_range"].startswith("10.")
    st, body, _ = api.call("GET", f"/v2/vpcs/{nyc1[0]['id']}")
    assert st == 200 and body["vpc"]["id"] == nyc1[0]["id"]
    step("sizes (s-2vcpu-4gb not in nyc3), regions, images (slug, id, type), default VPCs")

    line, fp = ssh_public_key()
    st, body, _ = api.call("POST", "/v2/account/keys", {"name": "selfcheck", "public_key": line})
    assert st == 201 and body["ssh_key"]["fingerprint"] == fp, (st, body)
    key_id = body["ssh_key"]["id"]
    st, body, _ = api.call("POST", "/v2/account/keys", {"name": "again", "public_key": line})
    assert st == 422 and body["message"] == "SSH Key is already in use on your account", body
    st, body, _ = api.call("GET", f"/v2/account/keys/{fp}")
    assert st == 200 and body["ssh_key"]["id"] == key_id
    statuses = [api.call("GET", "/v2/account/keys")[0:3:2] for _ in range(KEYS_PER_MINUTE + 1)]
    assert [s for s, _ in statuses] == [200] * KEYS_PER_MINUTE + [429], statuses
    assert "retry-after" not in statuses[-1][1], statuses[-1]
    step("SSH keys: MD5 fingerprint, duplicate → 422, get by fingerprint, list limit → 429")

    st, body, _ = api.call("POST", "/v2/tags", {"name": "SelfCheck-Case"})
    assert st == 201 and body["tag"]["name"] == "SelfCheck-Case"
    st, body, _ = api.call("POST", "/v2/tags", {"name": "selfcheck-case"})
    assert st == 201 and body["tag"]["name"] == "SelfCheck-Case", body
    assert api.call("GET", "/v2/tags/selfcheck-case")[0] == 404
    assert api.call("GET", "/v2/tags/SelfCheck-Case")[0] == 200
    st, body, _ = api.call("POST", "/v2/tags", {"name": "bad tag!"})
    assert st == 400 and set(body) == {"error", "messages", "root_causes"}, body
    expected_errors.append(("tags_create", "pattern"))
    step("tags: case-stable, exact-case URLs, bad name → 400 {error, messages, root_causes}")
    return key_id, fp


def check_negative(api, fp, expected_errors):
    base = {"region": "nyc1", "size": "s-2vcpu-4gb", "image": "ubuntu-24-04-x64",
            "ssh_keys": [fp]}
    cases = [
        ("unknown field", dict(base, name="ok-1", user_dat="x"), "simulator: unknown field",
         ("droplets_create", "unknown")),
        ("bad droplet name", dict(base, name="bad_name"), "Only valid hostname characters",
         ("droplets_create", "pattern")),
        ("size not in region", dict(base, name="ok-2", region="nyc3"),
         "Size is not available in this region.", None),
        ("too many names", dict(base, names=[f"n{i}" for i in range(11)]), "up to 10", None),
        ("invalid image", dict(base, name="ok-3", image="ubuntu-99-04-x64"),
         "You specified an invalid image for Droplet creation.", None),
        ("unknown ssh key", dict(base, name="ok-4", ssh_keys=["00:11:22"]),
         "are invalid key identifiers", None),
        ("droplet limit", dict(base, names=[f"m{i}" for i in range(7)]),
         "creating this/these droplet(s) will exceed your droplet limit", None),
    ]
    for what, body, message, err in cases:
        st, out, _ = api.call("POST", "/v2/droplets", body)
        assert st == 422 and out["id"] == "unprocessable_entity" and message in out["message"], \
            (what, st, out)
        if err:
            expected_errors.append(err)
    st, out, _ = api.call("POST", "/v2/firewalls", {
        "name": "fw-missing-tag", "inbound_rules": [
            {"protocol": "tcp", "ports": "8786", "sources": {"tags": ["no-such-tag"]}}]})
    assert st == 422 and "do not exist" in out["message"], out
    st, out, _ = api.call("POST", "/v2/firewalls", {"name": "fw-no-rules", "inbound_rules": []})
    assert st == 422, out
    step("refused: " + ", ".join(c[0] for c in cases) + ", firewall naming a missing tag, "
         "firewall without rules")


def check_small_droplet(api, fp):
    """A droplet without ssh_keys and user_data: listing lag, actions, power, password e-mail."""
    st, body, _ = api.call("POST", "/v2/droplets", {"name": "plain", "region": "ams3",
                                                     "size": "s-1vcpu-1gb", "image": "debian-12-x64",
                                                     "ipv6": True, "tags": ["plain-tag"]})
    assert st == 202 and body["droplet"]["status"] == "new" and \
        body["droplet"]["networks"] == {"v4": [], "v6": []}, body
    assert "user_data" not in body["droplet"]
    did = body["droplet"]["id"]
    action = body["links"]["actions"][0]
    assert action["rel"] == "create" and action["href"].endswith(f"/v2/actions/{action['id']}")
    listed = [d["id"] for d in api.call("GET", "/v2/droplets")[1]["droplets"]]
    assert did not in listed, "a just-created droplet is left out of listings"
    assert api.call("GET", f"/v2/droplets/{did}")[0] == 200
    wait_for("listing", lambda: did in [d["id"] for d in api.call("GET", "/v2/droplets")[1]["droplets"]], 5)
    wait_for("active", lambda: api.call("GET", f"/v2/droplets/{did}")[1]["droplet"]["status"] == "active", 5)
    st, a, _ = api.call("GET", f"/v2/actions/{action['id']}")
    assert a["action"]["status"] == "completed" and a["action"]["completed_at"], a
    st, a, _ = api.call("POST", f"/v2/droplets/{did}/actions", {"type": "power_off"})
    assert st == 201 and a["action"]["type"] == "power_off", (st, a)
    wait_for("off", lambda: api.call("GET", f"/v2/droplets/{did}")[1]["droplet"]["status"] == "off", 5)
    assert did in [d["id"] for d in api.call("GET", "/v2/droplets")[1]["droplets"]], "off is listed"
    st, a, _ = api.call("POST", "/v2/droplets/actions?tag_name=plain-tag", {"type": "power_on"})
    assert st == 201 and [x["resource_id"] for x in a["actions"]] == [did], (st, a)
    wait_for("on", lambda: api.call("GET", f"/v2/droplets/{did}")[1]["droplet"]["status"] == "active", 5)
    inv = api.call("GET", "/_sim/inventory", token=None)[1]
    assert [e["droplet_id"] for e in inv["root_password_emails"]] == [did], inv["root_password_emails"]
    v6 = api.call("GET", f"/v2/droplets/{did}")[1]["droplet"]["networks"]["v6"]
    assert len(v6) == 1 and v6[0]["ip_address"].startswith("2001:db8:"), v6
    st, _, h = api.call("DELETE", f"/v2/droplets/{did}", raw=True)
    assert st == 204 and api.call("GET", f"/v2/droplets/{did}")[0] == 404
    step("new → listed after the lag → active; create action completed; power_off → off "
         "(still listed) → power_on by tag; ipv6; no ssh_keys → root-password e-mail event; DELETE → 404")


def check_cluster(api, fp, version):
    assert api.call("POST", "/_sim/mark", {"phase": "up"}, token=None)[0] == 200
    base = {"region": "nyc1", "size": "s-2vcpu-4gb", "image": "ubuntu-24-04-x64",
            "ssh_keys": [fp], "tags": [TAG]}
    st, body, _ = api.call("POST", "/v2/droplets", dict(base, name="sc-scheduler",
                                                         user_data=scheduler_user_data(version)))
    assert st == 202, body
    sid = body["droplet"]["id"]
    priv = wait_for("the scheduler's private IPv4", lambda: [
        n["ip_address"] for n in api.call("GET", f"/v2/droplets/{sid}")[1]["droplet"]["networks"]["v4"]
        if n["type"] == "private"], 5)[0]
    st, body, _ = api.call("POST", "/v2/droplets", dict(base, names=["sc-worker-0"],
                                                         user_data=worker_user_data(version, priv)))
    assert st == 202 and len(body["droplets"]) == 1, body
    wid = body["droplets"][0]["id"]
    d = wait_for("active", lambda: (lambda x: x if x["status"] == "active" else None)(
        api.call("GET", f"/v2/droplets/{sid}")[1]["droplet"]), 10, 0.05)
    no_public_yet = not any(n["type"] == "public" for n in d["networks"]["v4"])
    pub = wait_for("the public IPv4", lambda: [
        n["ip_address"] for n in api.call("GET", f"/v2/droplets/{sid}")[1]["droplet"]["networks"]["v4"]
        if n["type"] == "public"], 5)[0]
    assert pub.startswith("10.250.") and priv.startswith("10.116."), (pub, priv)
    step(f"scheduler droplet active {'before' if no_public_yet else 'with'} its public IPv4; "
         f"private {priv}, public {pub}")
    st, health = wait_for("/health on the private address",
                          lambda: _try(lambda: http_get(priv, 8787, "/health", 2)), 40, 0.3)
    assert (st, health) == (200, "ok"), (st, health)
    st, health = wait_for("/health on the public address",
                          lambda: _try(lambda: http_get(pub, 8787, "/health", 2)), 10, 0.3)
    assert (st, health) == (200, "ok")
    step("Dask scheduler /health on the private address, and on the public one via the forwarder")

    st, body, _ = api.call("POST", "/v2/firewalls", {
        "name": "selfcheck-fw", "tags": [TAG],
        "inbound_rules": [
            {"protocol": "tcp", "ports": "8786-8787", "sources": {"addresses": ["203.0.113.7/32"]}},
            {"protocol": "tcp", "ports": "all", "sources": {"tags": [TAG]}}],
        "outbound_rules": [{"protocol": "tcp", "ports": "all",
                            "destinations": {"addresses": ["0.0.0.0/0", "::/0"]}}]})
    assert st == 202 and body["firewall"]["status"] == "waiting", body
    assert body["firewall"]["inbound_rules"][1]["ports"] == "0", body["firewall"]["inbound_rules"]
    fwid = body["firewall"]["id"]
    wait_for("firewall succeeded",
             lambda: api.call("GET", f"/v2/firewalls/{fwid}")[1]["firewall"]["status"] == "succeeded", 5)
    t0 = time.monotonic()
    try:
        http_get(pub, 8787, "/health", 1.5)
        raise AssertionError("the firewall should drop 10.0.0.0 → public:8787")
    except (socket.timeout, TimeoutError):
        pass
    assert time.monotonic() - t0 >= 1.4
    st, _, _ = api.call("POST", f"/v2/firewalls/{fwid}/rules", {"inbound_rules": [
        {"protocol": "tcp", "ports": "8786-8787", "sources": {"addresses": ["10.0.0.0/32"]}}]})
    assert st == 204, st
    assert http_get(pub, 8787, "/health", 5) == (200, "ok")
    inv = api.call("GET", "/_sim/inventory", token=None)[1]
    fwd = [f for f in inv["forwarders"] if f["listen"] == f"{pub}:8787"][0]
    assert fwd["dropped"] >= 1 and fwd["allowed"] >= 2, fwd
    reach = [r for r in inv["firewall_vpc_reachability"] if r["to"] == sid and r["from"] == wid]
    assert reach and reach[0]["tcp"] == ["all"], inv["firewall_vpc_reachability"]
    assert {8786, 8787} <= set(reach[0]["listening"]) and reach[0]["blocked_listening"] == [], reach
    egress = [e["allowed"] for e in inv["firewall_egress"] if e["droplet"] == sid][0]
    assert [egress[k] for k in sorted(egress)] == [True, True, False], egress   # no udp/53 rule
    step("firewall waiting → succeeded; public:8787 from 10.0.0.0 dropped, then allowed by an "
         "added rule; VPC reachability worker → scheduler: all (8786/8787 listening, none blocked); "
         "egress report: no DNS rule")

    from distributed import Client
    with Client(f"tcp://{pub}:8786", timeout=30) as client:
        client.wait_for_workers(1, timeout=40)
        assert client.submit(lambda x: x + 1, 41).result(timeout=30) == 42
    step("a Dask client through public:8786 computed on the worker droplet")
    st, console, _ = api.call("GET", f"/_sim/console/{sid}", token=None, raw=True)
    assert st == 200 and b"Scheduler at" in console, console[-400:]
    inv = api.call("GET", "/_sim/inventory", token=None)[1]
    ds = {d["id"]: d for d in inv["droplets"]}
    assert ds[sid]["user_data"].startswith("#cloud-config") and ds[sid]["alive"] is True
    assert ds[sid]["booted"] == "booted" and ds[wid]["booted"] == "booted", ds
    assert "user_data" not in api.call("GET", f"/v2/droplets/{sid}")[1]["droplet"]
    assert inv["root_password_emails"] and all(e["droplet_id"] not in (sid, wid)
                                                for e in inv["root_password_emails"])
    st, page2, _ = api.call("GET", f"/v2/droplets?tag_name={TAG}&per_page=1&page=2")
    assert page2["meta"]["total"] == 2 and set(page2["links"]["pages"]) == {"first", "prev"}, page2
    step("console shows the scheduler; inventory has user_data, the API never; paging by tag")

    check_more(api, sid, wid, fwid, fp)
    assert api.call("POST", f"/_sim/droplets/{wid}/power_off", token=None)[0] == 200
    assert api.call("GET", f"/v2/droplets/{wid}")[1]["droplet"]["status"] == "off"
    wait_for("the worker's processes gone", lambda: [
        n for n in api.call("GET", "/_sim/inventory", token=None)[1]["runtime_nodes"]
        if n["id"] == str(wid) and not n["alive"]], 10, 0.2)
    step("guest power-off (test hook): the worker droplet is `off`, still listed, processes gone")
    assert api.call("POST", "/_sim/mark", {"phase": "down"}, token=None)[0] == 200
    st, payload, h = api.call("DELETE", f"/v2/droplets?tag_name={TAG}", raw=True)
    assert st == 204 and payload == b"", (st, payload)
    assert api.call("GET", f"/v2/droplets/{sid}")[0] == 404
    wait_for("processes stopped", lambda: all(
        not n["alive"] for n in api.call("GET", "/_sim/inventory", token=None)[1]["runtime_nodes"]), 15, 0.3)
    assert tcp_refused(priv, 8786) and tcp_refused(pub, 8786)
    inv = api.call("GET", "/_sim/inventory", token=None)[1]
    billed = {b["id"]: b for b in inv["billing"]["deleted"]}
    assert billed[sid]["billed_seconds"] >= 60 and billed[sid]["cost_usd"] >= 0.01, billed
    assert api.call("DELETE", f"/v2/firewalls/{fwid}")[0] == 204
    assert api.call("DELETE", f"/v2/account/keys/{fp}")[0] == 204
    summary = api.call("GET", "/_sim/requests/summary", token=None)[1]
    assert summary["down"]["by_operation"].get("droplets_destroy_byTag") == 1, summary["down"]
    step("DELETE ?tag_name → 204 no body; processes stopped, addresses closed; billed ≥ 60 s; "
         "requests counted per phase")


def check_more(api, sid, wid, fwid, fp):
    """The other endpoints clusterctl may use: their answers go through response validation."""
    for path in ("/v2/firewalls", "/v2/tags", "/v2/actions?per_page=5",
                 f"/v2/droplets/{sid}/actions", f"/v2/droplets/{sid}/firewalls"):
        st, body, _ = api.call("GET", path)
        assert st == 200 and body["meta"]["total"] >= 1, (path, st, body)
    aid = api.call("GET", f"/v2/droplets/{sid}/actions")[1]["actions"][0]["id"]
    assert api.call("GET", f"/v2/droplets/{sid}/actions/{aid}")[0] == 200
    fw = api.call("GET", f"/v2/firewalls/{fwid}")[1]["firewall"]
    st, body, _ = api.call("PUT", f"/v2/firewalls/{fwid}", {
        "name": "selfcheck-fw-2", "tags": fw["tags"], "inbound_rules": fw["inbound_rules"],
        "outbound_rules": fw["outbound_rules"]})
    assert st == 200 and body["firewall"]["name"] == "selfcheck-fw-2", (st, body)
    assert api.call("POST", f"/v2/firewalls/{fwid}/tags", {"tags": ["SelfCheck-Case"]})[0] == 204
    assert api.call("GET", f"/v2/firewalls/{fwid}")[1]["firewall"]["tags"] == [TAG, "SelfCheck-Case"]
    assert api.call("DELETE", f"/v2/firewalls/{fwid}/tags", {"tags": ["SelfCheck-Case"]})[0] == 204
    assert api.call("POST", "/v2/tags/SelfCheck-Case/resources", {"resources": [
        {"resource_id": str(wid), "resource_type": "droplet"}]})[0] == 204
    tag = api.call("GET", "/v2/tags/SelfCheck-Case")[1]["tag"]
    assert tag["resources"]["droplets"]["count"] == 1, tag
    assert api.call("DELETE", "/v2/tags/SelfCheck-Case")[0] == 204
    assert api.call("GET", f"/v2/droplets/{wid}")[1]["droplet"]["tags"] == [TAG]
    st, body, _ = api.call("GET", "/v2/droplets?name=SC-SCHEDULER")
    assert [d["id"] for d in body["droplets"]] == [sid], body
    assert api.call("GET", f"/v2/droplets?name=x&tag_name={TAG}")[0] == 400
    assert api.call("GET", "/v2/droplets?type=gpus")[1]["meta"]["total"] == 0
    st, body, _ = api.call("PUT", f"/v2/account/keys/{fp}", {"name": "renamed"})
    assert st == 200 and body["ssh_key"]["name"] == "renamed", (st, body)
    step("firewalls/tags/actions lists, PUT firewall, firewall tags, tag resources, tag delete "
         "untags, name filter, tag_name+name → 400, GPU listing, key rename")


def _try(fn):
    try:
        return fn()
    except OSError:
        return None


def check_faults_and_burst(api):
    st, body, _ = api.call("POST", "/_sim/faults", {"method": "GET", "path": "^/v2/sizes$",
                                                    "status": 503, "count": 1, "after": 1},
                           token=None)
    assert st == 201, body
    assert [api.call("GET", "/v2/sizes")[0] for _ in range(3)] == [200, 503, 200]
    st, body, _ = api.call("POST", "/_sim/faults", {"path": "^/v2/regions$", "status": 429,
                                                    "count": 1, "headers": {"retry-after": "2"}},
                           token=None)
    st, body, h = api.call("GET", "/v2/regions")
    assert st == 429 and body["id"] == "too_many_requests" and h["retry-after"] == "2", (st, body)
    assert api.call("DELETE", "/_sim/faults", token=None)[0] == 204
    step("faults: after/count/status/headers, then cleared")
    for _ in range(RATE_PER_MINUTE + 5):
        st, body, h = api.call("GET", "/v2/account")
        if st == 429:
            break
    assert st == 429 and body == {"id": "too_many_requests", "message": "API Rate limit exceeded.",
                                  "request_id": body.get("request_id")}, (st, body)
    assert int(h["retry-after"]) >= 1 and "ratelimit-reset" in h, h
    step(f"per-minute burst ({RATE_PER_MINUTE}) → 429 too_many_requests with retry-after")


def inside(keep):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", "10.0.0.0/8", "dev", "lo"], check=True)
    import distributed
    work = tempfile.mkdtemp(prefix="do-selfcheck-")
    cmd = [sys.executable, os.path.join(HERE, "do_sim.py"), "serve", "--workdir", work,
           "--python", sys.executable, "--token", TOKEN, "--boot-delay", "1.0",
           "--ip-delay", "0.3", "--public-ip-lag", "0.4", "--list-lag", "1.0",
           "--droplet-limit", "6", "--rate-per-minute", str(RATE_PER_MINUTE),
           "--keys-list-per-minute", str(KEYS_PER_MINUTE), "--firewall-delay", "0.3",
           "--action-delay", "0.3", "--drop-hold", "10"]
    stderr = open(os.path.join(work, "sim.stderr"), "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)
    ok = False
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready["ready"] is True and ready["ca_file"] == os.path.join(work, "ca.pem"), ready
        assert set(ready) == {"ready", "url", "ca_file"}, ready
        api = Api(ready["url"], ready["ca_file"])
        step(f"ready line: {ready['url']}")
        expected = []
        key_id, fp = check_api(api, expected)
        check_negative(api, fp, expected)
        check_small_droplet(api, fp)
        check_cluster(api, fp, distributed.__version__)
        check_faults_and_burst(api)
        proc.send_signal(15)
        assert proc.wait(timeout=30) == 0, "SIGTERM → exit 0"
        step("SIGTERM → exit 0")
        errors = [json.loads(x) for x in open(os.path.join(work, "sim-errors.jsonl"))]
        got = [(e.get("operation"), e["problems"][0]["kind"]) for e in errors
               if e["kind"] == "request-invalid"]
        others = [e for e in errors if e["kind"] != "request-invalid"]
        assert sorted(got) == sorted(expected) and not others, (got, expected, others)
        agent_errors = os.path.join(work, "agent-errors.jsonl")
        assert not os.path.exists(agent_errors) or not open(agent_errors).read().strip(), \
            open(agent_errors).read()
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
        left = subprocess.run(["pgrep", "-f", "do-selfcheck-"], capture_output=True,
                              text=True).stdout.split()
        print(f"{'PASS' if rc == 0 and not left else 'FAIL'} in {time.monotonic() - t0:.1f} s"
              + (f"; stray processes {left}" if left else ""), flush=True)
        sys.exit(rc or (1 if left else 0))
    print("DigitalOcean simulator self-check (inside unshare -n)", flush=True)
    sys.exit(0 if inside(args.keep) else 1)


if __name__ == "__main__":
    main()
