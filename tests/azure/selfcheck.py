#!/usr/bin/env python3
"""Self-check of the Azure Resource Manager + Entra ID simulator (root; ~40 s; plain asserts).

    $PY tests/azure/selfcheck.py [--keep]

Re-runs itself inside `unshare -n` (lo up, holding 10.0.0.0/8: the tests' sandbox), starts
`az_sim.py serve` as a test would, and drives it over HTTPS: the ready line; Entra ID tokens
(client secret, federated assertion, wrong secret, unknown tenant); ARM's 401s and the
subscription check; the catalog (subscription, locations, SKUs with restrictions, usages, image
versions); the refusals ARM makes (missing/wrong api-version, unknown property, read-only
property, missing required property, wrong enum, invalid group name, Basic/Dynamic public IP,
SkuNotAvailable, quota by message, unknown image, no SSH key, reserved admin name); then one
real cluster: a VNet with an inline subnet, an NSG, a Standard static public IP, NICs (private
IP in the PUT answer), a scheduler VM with a system-assigned identity and a worker VM whose
customData is cloud-init rendered from the real templates and booted through tests/vmboot; the
LRO through Azure-AsyncOperation; GET without customData, userData only with $expand; the role
assignment (PrincipalNotFound first, then with principalType); IMDS (no Metadata header → 400,
a token for the VM by its source address); the identity's 403 outside its group; the NSG
dropping the public port, then allowing it after a rule is added; a Dask computation through
the public IP; boot diagnostics served over HTTPS; a guest power-off (stopped, still billed);
a capacity failure leaving a Failed VM (deleted through Location polling, deleteOptions
honoured); the tag listings; a resource group deleted by the service principal (cascade,
409 while deleting); the scheduler's identity deleting its own group at the TTL (processes
stopped, billing ended); throttling (429 + Retry-After); SIGTERM → 0; sim-errors.jsonl holds
exactly the expected refusals and agent-errors.jsonl nothing.
"""

import argparse
import base64
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
TENANT = "11111111-2222-4333-8444-555555555555"
CLIENT = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
SECRET = "selfcheck-secret"
SUB = "99999999-8888-4777-8666-555555555555"
ROOT = "/etc/clusterctl"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
V = {"res": "2024-07-01", "cmp": "2024-07-01", "net": "2024-03-01", "auth": "2022-04-01"}
TAGS = {"clusterctl-cluster": "sc"}


class Api:
    def __init__(self, url, ca_file):
        u = urllib.parse.urlparse(url)
        self.host, self.port, self.url = u.hostname, u.port, url
        self.ctx = ssl.create_default_context(cafile=ca_file)
        self.token = None

    def call(self, method, path, body=None, token="default", form=None, raw=False,
             headers=None):
        if path.startswith("https://"):
            path = path[len(self.url):]
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=30)
        h = dict(headers or {})
        tok = self.token if token == "default" else token
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        data = None
        if body is not None:
            data, h["Content-Type"] = json.dumps(body).encode(), "application/json"
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            h["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        payload = r.read()
        conn.close()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if raw:
            return r.status, payload, hdrs
        return r.status, (json.loads(payload) if payload else None), hdrs

    def arm(self, method, path, body=None, ver="res", **kw):
        sep = "&" if "?" in path else "?"
        return self.call(method, f"/subscriptions/{SUB}{path}{sep}api-version={V[ver]}", body,
                         **kw)


T0 = time.monotonic()


def step(msg):
    print(f"  ok  [{time.monotonic() - T0:4.1f}s] {msg}", flush=True)


def wait_for(what, predicate, seconds, every=0.1):
    end = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(every)


def poll(api, url, seconds=20):
    """Follow an Azure-AsyncOperation URL to a terminal status; the final body."""
    def done():
        st, body, h = api.call("GET", url)
        assert st == 200, (st, body)
        if body["status"] == "InProgress":
            assert h.get("retry-after"), h
            return None
        return body
    return wait_for(f"operation {url}", done, seconds, 0.2)


def try_(fn):
    try:
        return fn()
    except OSError:
        return None


# ----- cloud-init in the exact shape of templates/*.j2 -----

def shell_quote(v):
    safe = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@%+,")
    return v if v and all(c in safe for c in v) else "'" + v.replace("'", "'\\''") + "'"


def render(role, argv, env, files, version):
    import jinja2
    jenv = jinja2.Environment(keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    jenv.filters["shell_quote"] = shell_quote

    def tpl(name):
        with open(os.path.join(REPO, "templates", name), encoding="utf-8") as fh:
            return jenv.from_string(fh.read())
    script = tpl("node-run.sh.j2").render(role=role, cluster="sc", ttl_minutes=30,
                                          install_docker=True, gpu=False, fetch=False, root=ROOT,
                                          image=f"ghcr.io/dask/dask:{version}-py3.12", argv=argv)
    entries = list(files) + [(f"{ROOT}/dask.env", "".join(f"{k}={v}\n" for k, v in
                                                          sorted(env.items())), "0600"),
                             (f"{ROOT}/run.sh", script, "0700")]
    text = tpl("cloud-init.yaml.j2").render(role=role, cluster="sc", root=ROOT, files=[
        {"path": p, "mode": m, "b64": base64.b64encode(c.encode()).decode()}
        for p, c, m in entries])
    return base64.b64encode(text.encode()).decode()


# The TTL path the Azure provider will need: at the expiry, the scheduler's managed identity
# gets a token from IMDS (from the VM's own address) and deletes its own resource group.
TTL_PRELOAD = '''
import asyncio, http.client, json, os, time, urllib.request

def _delete_group(ip):
    conn = http.client.HTTPConnection("169.254.169.254", 80, timeout=10, source_address=(ip, 0))
    conn.request("GET", "/metadata/identity/oauth2/token?api-version=2018-02-01"
                 "&resource=https://management.azure.com/", headers={"Metadata": "true"})
    token = json.loads(conn.getresponse().read())["access_token"]
    req = urllib.request.Request(os.environ["AZ_ARM"] + os.environ["AZ_GROUP"] +
                                 "?api-version=2024-07-01", method="DELETE",
                                 headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=30) as r:
        print("clusterctl-ttl: resource group delete answered", r.status, flush=True)

async def _at(scheduler, delay):
    await asyncio.sleep(delay)
    ip = scheduler.address.split("://", 1)[1].rsplit(":", 1)[0]
    await asyncio.get_running_loop().run_in_executor(None, _delete_group, ip)

def dask_setup(scheduler):
    delay = max(0.0, float(os.environ["CLUSTERCTL_EXPIRES"]) - time.time())
    scheduler._az_ttl = asyncio.get_running_loop().create_task(_at(scheduler, delay))
'''


def scheduler_data(version, arm, group, expires):
    argv = ["dask", "scheduler", "--host", "0.0.0.0", "--port", "8786", "--dashboard-address",
            "0.0.0.0:8787", "--preload", f"{ROOT}/az_ttl.py"]
    env = {"CLUSTERCTL_CLUSTER": "sc", "CLUSTERCTL_EXPIRES": str(int(expires)),
           "AZ_ARM": arm, "AZ_GROUP": f"/subscriptions/{SUB}/resourceGroups/{group}"}
    return render("scheduler", argv, env, [(f"{ROOT}/az_ttl.py", TTL_PRELOAD, "0644")], version)


def worker_data(version, sched_ip):
    argv = ["dask", "worker", f"tcp://{sched_ip}:8786", "--host", "0.0.0.0", "--no-dashboard",
            "--death-timeout", "60s", "--no-nanny", "--nthreads", "1", "--name", "sc-w0"]
    return render("worker", argv, {"CLUSTERCTL_CLUSTER": "sc"}, [], version)


def ssh_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    return ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def vm_body(nic_id, custom=None, size="Standard_D2s_v5", identity=False, **extra):
    props = {
        "hardwareProfile": {"vmSize": size},
        "storageProfile": {"imageReference": {"publisher": "Canonical",
                                              "offer": "ubuntu-24_04-lts", "sku": "server",
                                              "version": "latest"},
                           "osDisk": {"createOption": "FromImage", "deleteOption": "Delete",
                                      "managedDisk": {"storageAccountType": "StandardSSD_LRS"}}},
        "osProfile": {"computerName": "node", "adminUsername": "clusterctl",
                      "linuxConfiguration": {"disablePasswordAuthentication": True, "ssh": {
                          "publicKeys": [{"path": "/home/clusterctl/.ssh/authorized_keys",
                                          "keyData": KEY}]}}},
        "networkProfile": {"networkInterfaces": [{"id": nic_id, "properties": {
            "deleteOption": "Delete", "primary": True}}]},
        "diagnosticsProfile": {"bootDiagnostics": {"enabled": True}}}
    if custom:
        props["osProfile"]["customData"] = custom
    props.update(extra.pop("props", {}))
    body = {"location": "eastus", "tags": TAGS, "properties": props}
    if identity:
        body["identity"] = {"type": "SystemAssigned"}
    body.update(extra)
    return body


KEY = None


# ----- the checks -----

def check_tokens(api, fed_token, expected):
    base = {"client_id": CLIENT, "grant_type": "client_credentials",
            "scope": "https://management.azure.com/.default"}
    st, body, _ = api.call("POST", f"/{TENANT}/oauth2/v2.0/token", token=None,
                           form=dict(base, client_secret="wrong"))
    assert st == 401 and body["error"] == "invalid_client" and \
        body["error_description"].startswith("AADSTS7000215") and \
        body["error_codes"] == [7000215], (st, body)
    st, body, _ = api.call("POST", f"/{uuid.uuid4()}/oauth2/v2.0/token", token=None,
                           form=dict(base, client_secret=SECRET))
    assert st == 400 and "AADSTS90002" in body["error_description"], (st, body)
    st, body, _ = api.call("POST", f"/{TENANT}/oauth2/v2.0/token", token=None, form=dict(
        base, client_assertion=fed_token,
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer"))
    assert st == 200 and isinstance(body["expires_in"], int), (st, body)
    st, body, _ = api.call("POST", f"/{TENANT}/oauth2/v2.0/token", token=None,
                           form=dict(base, client_secret=SECRET))
    assert st == 200 and set(body) == {"token_type", "expires_in", "ext_expires_in",
                                       "access_token"} and body["token_type"] == "Bearer", body
    api.token = body["access_token"]
    step("Entra ID: wrong secret 401 AADSTS7000215, unknown tenant 400 AADSTS90002, federated "
         "assertion and client secret → {token_type, expires_in (number), ext_expires_in, "
         "access_token}")
    st, body, h = api.arm("GET", "/resourcegroups", token=None)
    assert st == 401 and body["error"]["code"] == "AuthenticationFailed" and \
        "www-authenticate" in h, (st, body)
    st, body, _ = api.arm("GET", "/resourcegroups", token="forged")
    assert st == 401 and body["error"]["code"] == "InvalidAuthenticationToken", body
    st, body, _ = api.call("GET", f"/subscriptions/{uuid.uuid4()}/resourcegroups"
                                  f"?api-version=2024-07-01")
    assert st == 404 and body["error"]["code"] == "SubscriptionNotFound", body
    step("ARM: 401 AuthenticationFailed (+WWW-Authenticate), InvalidAuthenticationToken; 404 "
         "SubscriptionNotFound")


def check_catalog(api):
    st, body, _ = api.call("GET", f"/subscriptions/{SUB}?api-version=2022-12-01")
    assert st == 200 and body["tenantId"] == TENANT and body["state"] == "Enabled", body
    st, body, _ = api.call("GET", f"/subscriptions/{SUB}/locations?api-version=2022-12-01")
    assert "eastus" in [x["name"] for x in body["value"]], body
    st, body, _ = api.call("GET", f"/subscriptions/{SUB}/providers/Microsoft.Compute/skus"
                                  "?api-version=2021-07-01&$filter=location eq 'uksouth'"
                           .replace(" ", "%20"))
    skus = {s["name"]: s for s in body["value"]}
    assert skus["Standard_D2as_v5"]["restrictions"][0]["reasonCode"] == \
        "NotAvailableForSubscription" and not skus["Standard_D4s_v5"]["restrictions"], skus
    st, body, _ = api.arm("GET", "/providers/Microsoft.Compute/locations/eastus/usages",
                          ver="cmp")
    names = {u["name"]["value"]: u for u in body["value"]}
    assert names["cores"]["limit"] == 100 and names["standardDSv5Family"]["limit"] == 8, names
    img = ("/providers/Microsoft.Compute/locations/eastus/publishers/Canonical/artifacttypes/"
           "vmimage/offers/ubuntu-24_04-lts/skus/server/versions")
    st, body, _ = api.arm("GET", img, ver="cmp")
    assert st == 200 and body[-1]["name"].startswith("24.04."), body
    st, body, _ = api.arm("GET", img.replace("ubuntu-24_04-lts", "ubuntu-99"), ver="cmp")
    assert st == 404, (st, body)
    step("subscription, locations, resource SKUs (D2as_v5 restricted in uksouth), usages "
         "(family quota 8), image versions (unknown image 404)")


def check_refusals(api, expected):
    st, body, _ = api.call("GET", f"/subscriptions/{SUB}/resourcegroups/x")
    assert st == 400 and body["error"]["code"] == "MissingApiVersionParameter", body
    st, body, _ = api.call("GET", f"/subscriptions/{SUB}/resourcegroups/x?api-version=2019-01-01")
    assert st == 400 and body["error"]["code"] == "InvalidApiVersionParameter", body
    st, body, _ = api.call("GET", f"/subscriptions/{SUB}/resourceGroups/x/providers/"
                                  "Microsoft.Compute/virtualMachines/y?api-version=2023-03-01")
    assert st == 400 and body["error"]["code"] == "NoRegisteredProviderFound", body
    expected += [("ResourceGroups_Get", "required"), ("ResourceGroups_Get", "api-version"),
                 ("VirtualMachines_Get", "api-version")]
    st, body, _ = api.arm("PUT", "/resourcegroups/bad%20name!", {"location": "eastus"})
    assert st == 400 and body["error"]["code"] == "InvalidResourceGroup", body
    expected.append(("ResourceGroups_CreateOrUpdate", "pattern"))
    st, body, _ = api.arm("PUT", "/resourcegroups/sc-rg", {"location": "eastus", "tags": TAGS,
                                                           "colour": "blue"})
    assert st == 400 and body["error"]["code"] == "InvalidRequestContent" and \
        "colour" in body["error"]["message"], body
    expected.append(("ResourceGroups_CreateOrUpdate", "unknown"))
    step("refused: missing api-version, wrong api-version (groups; VMs: NoRegisteredProvider"
         "Found), invalid group name, unknown property (InvalidRequestContent)")


def net(api, expected):
    g = "/resourceGroups/sc-rg/providers/Microsoft.Network"
    st, body, _ = api.arm("PUT", "/resourcegroups/sc-rg", {"location": "eastus", "tags": TAGS})
    assert st == 201, body
    assert api.arm("PUT", "/resourcegroups/sc-rg", {"location": "eastus", "tags": TAGS})[0] == 200
    assert api.arm("HEAD", "/resourcegroups/sc-rg", raw=True)[0] == 204
    assert api.arm("HEAD", "/resourcegroups/nope", raw=True)[0] == 404
    st, body, h = api.arm("PUT", f"{g}/virtualNetworks/sc-vnet", {
        "location": "eastus", "tags": TAGS, "properties": {
            "addressSpace": {"addressPrefixes": ["10.1.0.0/16"]},
            "subnets": [{"name": "nodes", "properties": {"addressPrefix": "10.1.0.0/24"}}]}},
        ver="net")
    assert st == 201 and body["properties"]["provisioningState"] == "Updating", body
    assert poll(api, h["azure-asyncoperation"])["status"] == "Succeeded"
    subnet = body["properties"]["subnets"][0]["id"]
    assert api.call("GET", subnet + "?api-version=2024-03-01")[1]["properties"][
        "provisioningState"] == "Succeeded"
    rule = {"name": "dask", "properties": {
        "protocol": "Tcp", "access": "Allow", "direction": "Inbound", "priority": 100,
        "sourceAddressPrefix": "203.0.113.7/32", "sourcePortRange": "*",
        "destinationAddressPrefix": "*", "destinationPortRanges": ["8786", "8787"]}}
    bad = json.loads(json.dumps(rule))
    bad["properties"]["protocol"] = "Tcpx"
    st, body, _ = api.arm("PUT", f"{g}/networkSecurityGroups/sc-nsg", {
        "location": "eastus", "properties": {"securityRules": [bad]}}, ver="net")
    assert st == 400 and body["error"]["code"] == "InvalidRequestFormat", body
    bad["properties"]["protocol"] = "Tcp"
    del bad["properties"]["priority"]
    st, body, _ = api.arm("PUT", f"{g}/networkSecurityGroups/sc-nsg", {
        "location": "eastus", "properties": {"securityRules": [bad]}}, ver="net")
    assert st == 400 and "priority" in body["error"]["message"], body
    expected += [("NetworkSecurityGroups_CreateOrUpdate", "enum"),
                 ("NetworkSecurityGroups_CreateOrUpdate", "required")]
    st, nsg, h = api.arm("PUT", f"{g}/networkSecurityGroups/sc-nsg", {
        "location": "eastus", "tags": TAGS, "properties": {"securityRules": [rule]}}, ver="net")
    assert st == 201 and len(nsg["properties"]["defaultSecurityRules"]) == 6, nsg
    st, body, _ = api.arm("PUT", f"{g}/publicIPAddresses/sc-pip", {
        "location": "eastus", "sku": {"name": "Standard"},
        "properties": {"publicIPAllocationMethod": "Dynamic"}}, ver="net")
    assert st == 400 and body["error"]["code"] == "StandardSkuPublicIPAddressesMustBeStatic"
    st, pip, _ = api.arm("PUT", f"{g}/publicIPAddresses/sc-pip", {
        "location": "eastus", "tags": TAGS, "sku": {"name": "Standard", "tier": "Regional"},
        "properties": {"publicIPAllocationMethod": "Static"}}, ver="net")
    assert st == 201 and pip["properties"]["ipAddress"].startswith("10.251."), pip
    nics = {}
    for name, with_pip in (("sc-sched-nic", True), ("sc-w0-nic", False), ("sc-x-nic", False)):
        conf = {"subnet": {"id": subnet}}
        if with_pip:
            conf["publicIPAddress"] = {"id": pip["id"], "properties": {"deleteOption": "Delete"}}
        st, nic, h = api.arm("PUT", f"{g}/networkInterfaces/{name}", {
            "location": "eastus", "tags": TAGS, "properties": {
                "networkSecurityGroup": {"id": nsg["id"]},
                "ipConfigurations": [{"name": "ipconfig1", "properties": conf}]}}, ver="net")
        assert st == 201 and "azure-asyncoperation" in h, (st, nic)
        nics[name] = nic
    ips = [n["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"]
           for n in nics.values()]
    assert ips == ["10.1.0.4", "10.1.0.5", "10.1.0.6"], ips
    st, body, _ = api.arm("DELETE", f"{g}/networkSecurityGroups/sc-nsg", ver="net")
    assert st == 400 and body["error"]["code"] == "InUseNetworkSecurityGroupCannotBeDeleted"
    st, body, _ = api.arm("DELETE", f"{g}/publicIPAddresses/sc-pip", ver="net")
    assert st == 400 and body["error"]["code"] == "PublicIPAddressCannotBeDeleted", body
    step("group PUT 201/200, HEAD 204/404; VNet with inline subnet (201 Updating → operation "
         "Succeeded); NSG refused for a wrong enum and a missing priority; public IP Dynamic "
         "refused, Static 201; NICs with private IPs in the PUT answers "
         f"{ips}; NSG and public IP in use cannot be deleted")
    return subnet, nsg, pip, {k: v["id"] for k, v in nics.items()}


def check_vm_refusals(api, nic, expected):
    p = "/resourceGroups/sc-rg/providers/Microsoft.Compute/virtualMachines/bad"
    cases = [
        ("read-only", dict(vm_body(nic), properties=dict(vm_body(nic)["properties"],
                                                         provisioningState="Succeeded")),
         400, "InvalidRequestContent", ("VirtualMachines_CreateOrUpdate", "read-only")),
        ("missing location", {k: v for k, v in vm_body(nic).items() if k != "location"},
         400, "InvalidParameter", ("VirtualMachines_CreateOrUpdate", "required")),
        ("wrong enum", vm_body(nic, props={"priority": "Whenever"}), 400, "InvalidParameter",
         ("VirtualMachines_CreateOrUpdate", "enum")),
        ("size not offered", dict(vm_body(nic, size="Standard_D2as_v5"), location="uksouth"),
         409, "SkuNotAvailable", None),
        ("quota", vm_body(nic, size="Standard_D16s_v5"), 409, "OperationNotAllowed", None),
        ("unknown image", vm_body(nic, props={"storageProfile": {"imageReference": {
            "publisher": "Canonical", "offer": "ubuntu-99_04-lts", "sku": "server",
            "version": "latest"}}}), 404, "PlatformImageNotFound", None),
        ("no ssh key", vm_body(nic, props={"osProfile": {"adminUsername": "clusterctl",
                                                         "linuxConfiguration": {
                                                             "disablePasswordAuthentication":
                                                                 True}}}),
         400, "InvalidParameter", None),
        ("reserved admin", vm_body(nic, props={"osProfile": {"adminUsername": "admin",
                                                             "adminPassword": "x"}}),
         400, "InvalidParameter", None),
        ("customData not base64", vm_body(nic, custom="#cloud-config"), 400,
         "InvalidParameter", None),
    ]
    for what, body, status, code, err in cases:
        st, out, _ = api.arm("PUT", p, body, ver="cmp")
        assert st == status and out["error"]["code"] == code, (what, st, out)
        if err:
            expected.append(err)
    quota = api.arm("PUT", p, vm_body(nic, size="Standard_D16s_v5"), ver="cmp")[1]
    assert "standardDSv5Family Cores quota" in quota["error"]["message"] and \
        "Current Limit: 8" in quota["error"]["message"], quota
    assert api.arm("GET", p, ver="cmp")[0] == 404
    step("VM refused: " + ", ".join(c[0] for c in cases) + " (quota only by its message); "
         "nothing created")


def http_get(ip, port, path, timeout):
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


def check_cluster(api, nics, nsg, pip, ready, version):
    vms = "/resourceGroups/sc-rg/providers/Microsoft.Compute/virtualMachines"
    api.call("POST", "/_sim/mark", {"phase": "up"}, token=None)
    expires = time.time() + 16
    st, sched, h = api.arm("PUT", f"{vms}/sc-scheduler", vm_body(
        nics["sc-sched-nic"], scheduler_data(version, ready["url"], "sc-rg", expires),
        identity=True, props={"userData": base64.b64encode(b"not a secret").decode()}),
        ver="cmp")
    assert st == 201 and sched["properties"]["provisioningState"] == "Creating", (st, sched)
    assert "customData" not in sched["properties"]["osProfile"], sched
    principal = sched["identity"]["principalId"]
    assert sched["identity"]["tenantId"] == TENANT and principal, sched["identity"]
    sched_op = h["azure-asyncoperation"]
    st, wk, wh = api.arm("PUT", f"{vms}/sc-w0", vm_body(
        nics["sc-w0-nic"], worker_data(version, "10.1.0.4")), ver="cmp")
    assert st == 201, wk
    # PrincipalNotFound right after the identity exists, then fine with principalType
    ra = (f"/subscriptions/{SUB}/resourceGroups/sc-rg/providers/Microsoft.Authorization/"
          f"roleAssignments/{uuid.uuid4()}?api-version={V['auth']}")
    props = {"roleDefinitionId": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/"
                                 f"roleDefinitions/{CONTRIBUTOR}", "principalId": principal}
    st, body, _ = api.call("PUT", ra, {"properties": props})
    assert st == 400 and body["error"]["code"] == "PrincipalNotFound", body
    st, body, _ = api.call("PUT", ra, {"properties": dict(props,
                                                           principalType="ServicePrincipal")})
    assert st == 201 and body["properties"]["scope"].endswith("/resourceGroups/sc-rg"), body
    assert api.call("GET", ra)[0] == 200
    assert poll(api, sched_op)["status"] == "Succeeded"
    assert poll(api, wh["azure-asyncoperation"])["status"] == "Succeeded"
    step("scheduler VM (system identity, principalId in the 201) and worker VM: 201 Creating → "
         "operation Succeeded; role assignment: PrincipalNotFound, then 201 with principalType")
    st, v, _ = api.arm("GET", f"{vms}/sc-scheduler?$expand=instanceView", ver="cmp")
    codes = [s["code"] for s in v["properties"]["instanceView"]["statuses"]]
    assert codes == ["ProvisioningState/succeeded", "PowerState/running"], codes
    assert "customData" not in v["properties"]["osProfile"] and "userData" not in v["properties"]
    st, v, _ = api.arm("GET", f"{vms}/sc-scheduler?$expand=userData", ver="cmp")
    assert base64.b64decode(v["properties"]["userData"]) == b"not a secret", v["properties"]
    listed = api.arm("GET", vms, ver="cmp")[1]["value"]
    assert {x["name"] for x in listed} == {"sc-scheduler", "sc-w0"} and not any(
        "customData" in x["properties"]["osProfile"] for x in listed)
    step("GET $expand=instanceView: PowerState/running; customData never returned (GET, list);"
         " userData only with $expand=userData")

    st, body = http_get("169.254.169.254", 80, "/metadata/identity/oauth2/token?api-version="
                        "2018-02-01&resource=https://management.azure.com/", 5)
    assert st == 400 and "bad_request_102" in body, (st, body)
    conn = http.client.HTTPConnection("169.254.169.254", 80, timeout=5,
                                      source_address=("10.1.0.4", 0))
    conn.request("GET", "/metadata/identity/oauth2/token?api-version=2018-02-01&resource="
                 "https://management.azure.com", headers={"Metadata": "true"})
    r = conn.getresponse()
    tok = json.loads(r.read())
    assert r.status == 200 and isinstance(tok["expires_on"], str), tok
    conn.request("GET", "/metadata/instance?api-version=2021-02-01", headers={"Metadata": "true"})
    r = conn.getresponse()
    inst = json.loads(r.read())
    assert inst["compute"]["name"] == "sc-scheduler" and "customData" not in json.dumps(inst)
    conn.close()
    mi = tok["access_token"]
    time.sleep(1.0)     # --rbac-delay
    st, body, _ = api.arm("GET", "/resourcegroups", token=mi)
    assert st == 403 and body["error"]["code"] == "AuthorizationFailed", (st, body)
    st, body, _ = api.arm("GET", "/resourcegroups/sc-rg", token=mi)
    assert st == 200, (st, body)
    step("IMDS: no Metadata header → 400 bad_request_102; from 10.1.0.4 a token (expires_on a "
         "string) and instance metadata without customData; the identity may read its group, "
         "403 AuthorizationFailed at the subscription")

    pub = pip["properties"]["ipAddress"]
    st, health = wait_for("/health on the private address",
                          lambda: try_(lambda: http_get("10.1.0.4", 8787, "/health", 2)), 40,
                          0.3)
    assert (st, health) == (200, "ok")
    t0 = time.monotonic()
    try:
        http_get(pub, 8787, "/health", 1.5)
        raise AssertionError("the NSG should drop 10.0.0.0 → public:8787")
    except (socket.timeout, TimeoutError):
        assert time.monotonic() - t0 >= 1.4
    g = "/resourceGroups/sc-rg/providers/Microsoft.Network/networkSecurityGroups/sc-nsg"
    st, body, h = api.arm("PUT", f"{g}/securityRules/client", {"properties": {
        "protocol": "Tcp", "access": "Allow", "direction": "Inbound", "priority": 110,
        "sourceAddressPrefix": "10.0.0.0/32", "sourcePortRange": "*",
        "destinationAddressPrefix": "*", "destinationPortRange": "8786-8787"}}, ver="net")
    assert st == 201, body
    assert http_get(pub, 8787, "/health", 5) == (200, "ok")
    from distributed import Client
    with Client(f"tcp://{pub}:8786", timeout=30) as client:
        client.wait_for_workers(1, timeout=40)
        assert client.submit(lambda x: x + 1, 41).result(timeout=30) == 42
    step(f"Dask /health on 10.1.0.4; public {pub}:8787 dropped by the NSG, allowed after a rule "
         "for 10.0.0.0/32; a Dask client through the public 8786 computed on the worker")

    st, bd, _ = api.arm("POST", f"{vms}/sc-scheduler/retrieveBootDiagnosticsData", ver="cmp")
    assert st == 200, bd
    st, text, _ = api.call("GET", bd["serialConsoleLogBlobUri"], token=None, raw=True)
    assert st == 200 and b"Scheduler at" in text, text[-300:]
    st, _, _ = api.call("GET", bd["serialConsoleLogBlobUri"].replace("sig=", "sig=x"),
                        token=None, raw=True)
    assert st == 403
    step("retrieveBootDiagnosticsData → serialConsoleLogBlobUri served over HTTPS (Dask's "
         "output; a wrong SAS signature 403)")
    assert api.call("POST", "/_sim/vms/sc-w0/power_off", {}, token=None)[0] == 200
    iv = api.arm("GET", f"{vms}/sc-w0/instanceView", ver="cmp")[1]
    assert iv["statuses"][-1]["code"] == "PowerState/stopped", iv
    inv = api.call("GET", "/_sim/inventory", token=None)[1]
    bill = [b for b in inv["billing"]["live"] if b["id"].endswith("/sc-w0")][0]
    assert bill["allocated"] and bill["power"] == "stopped", bill
    vm = {v["name"]: v for v in inv["vms"]}
    assert vm["sc-scheduler"]["custom_data"].startswith("#cloud-config") and \
        vm["sc-scheduler"]["public_ips"] == [pub] and vm["sc-w0"]["public_ips"] == []
    assert not vm["sc-w0"]["admin_password_used"] and vm["sc-w0"]["ssh_keys"] == 1
    nsgs = {n["id"].rsplit("/", 1)[-1]: n for n in inv["nsgs"]}
    assert nsgs["sc-nsg"]["world_open"] == [], nsgs["sc-nsg"]
    step("guest power-off: PowerState/stopped, still allocated and billed; inventory: "
         "customData present (hidden from the API), public IP on the scheduler only, no "
         "password, no world-open NSG rule")
    return principal, expires


def check_capacity_and_lists(api, nics, expected):
    vms = "/resourceGroups/sc-rg/providers/Microsoft.Compute/virtualMachines"
    assert api.call("POST", "/_sim/capacity", {"no_capacity": ["Standard_E4s_v5"]},
                    token=None)[0] == 200
    st, body, h = api.arm("PUT", f"{vms}/sc-big", vm_body(nics["sc-x-nic"],
                                                         size="Standard_E4s_v5"), ver="cmp")
    assert st == 201, body
    final = poll(api, h["azure-asyncoperation"])
    assert final["status"] == "Failed" and final["error"]["code"] == "AllocationFailed", final
    v = api.arm("GET", f"{vms}/sc-big", ver="cmp")[1]
    assert v["properties"]["provisioningState"] == "Failed", v
    st, _, h = api.arm("DELETE", f"{vms}/sc-big", ver="cmp", raw=True)
    assert st == 202 and "location" in h and "azure-asyncoperation" in h, h
    statuses = []
    wait_for("the Location poll to finish", lambda: statuses.append(
        api.call("GET", h["location"], raw=True)[0]) or statuses[-1] == 200, 10, 0.2)
    assert 202 in statuses or statuses == [200], statuses
    assert api.arm("GET", f"{vms}/sc-big", ver="cmp")[0] == 404
    inv = api.call("GET", "/_sim/inventory", token=None)[1]
    names = {r["name"] for r in inv["resources"]}
    assert "sc-x-nic" not in names and not [n for n in names if n.startswith("sc-big_OsDisk")]
    step("no capacity: 201, then the operation Failed AllocationFailed, the VM left Failed; "
         "DELETE 202 (Location 202 → 200); its NIC and OS disk deleted by their deleteOption")
    flt = "$filter=" + urllib.parse.quote("tagName eq 'clusterctl-cluster' and tagValue eq 'sc'")
    st, body, _ = api.arm("GET", f"/resources?{flt}")
    types = sorted({r["type"] for r in body["value"]})
    assert "Microsoft.Compute/virtualMachines" in types and "Microsoft.Network/networkInterfaces" \
        in types and all("tags" not in r for r in body["value"]), body
    st, body, _ = api.arm("GET", f"/resources?$top=2")
    assert len(body["value"]) == 2 and body["nextLink"], body
    assert api.call("GET", body["nextLink"])[0] == 200
    st, body, _ = api.arm("GET", f"/resourcegroups?{flt}")
    assert [g["name"] for g in body["value"]] == ["sc-rg"], body
    step(f"tag listings: resources {types} (without tags, as ARM answers), paging via "
         "nextLink, groups by tag")


def check_group_delete(api):
    assert api.arm("PUT", "/resourcegroups/other-rg", {"location": "westus2"})[0] == 201
    g = "/resourceGroups/other-rg/providers/Microsoft.Network"
    assert api.arm("PUT", f"{g}/networkSecurityGroups/n", {"location": "westus2"},
                   ver="net")[0] == 201
    st, _, h = api.arm("DELETE", "/resourcegroups/other-rg", raw=True)
    assert st == 202 and "location" in h and "retry-after" in h, h
    st, body, _ = api.arm("PUT", f"{g}/networkSecurityGroups/m", {"location": "westus2"},
                          ver="net")
    assert st == 409 and body["error"]["code"] == "ResourceGroupBeingDeleted", body
    assert api.call("GET", h["location"], raw=True)[0] == 202
    wait_for("the group gone", lambda: api.call("GET", h["location"], raw=True)[0] == 200, 10,
             0.2)
    assert api.arm("GET", "/resourcegroups/other-rg")[0] == 404
    step("group DELETE 202 + Location (202 until done, then 200); 409 ResourceGroupBeing"
         "Deleted meanwhile; contents gone")


def check_ttl(api, expires):
    inv = api.call("GET", "/_sim/inventory", token=None)[1]
    nodes = {v["name"]: v["node"] for v in inv["vms"]}
    wait_for("the scheduler's identity deleting sc-rg at the TTL", lambda: api.arm(
        "HEAD", "/resourcegroups/sc-rg", raw=True)[0] == 404, max(5, expires - time.time()) + 15,
        0.3)
    inv = api.call("GET", "/_sim/inventory", token=None)[1]
    by = [e for e in inv["events"] if e["event"] == "group-deleting" and e["name"] == "sc-rg"]
    assert by and by[0]["principal_kind"] == "managed_identity", by
    wait_for("processes stopped", lambda: all(
        not n["alive"] for n in api.call("GET", "/_sim/inventory", token=None)[1]
        ["runtime_nodes"] if n["id"] in nodes.values()), 15, 0.3)
    inv = api.call("GET", "/_sim/inventory", token=None)[1]
    assert not inv["vms"] and not inv["resources"] and not inv["role_assignments"], inv
    assert not inv["billing"]["live"], inv["billing"]["live"]
    billed = {b["id"].rsplit("/", 1)[-1]: b for b in inv["billing"]["deleted"]
              if b["type"].endswith("virtualMachines")}
    assert billed["sc-scheduler"]["cost_usd"] > 0 and billed["sc-w0"]["cost_usd"] > 0 and \
        billed["sc-big"]["billed_seconds"] == 0, billed      # a Failed VM was never allocated
    assert not inv["forwarders"], inv["forwarders"]
    step("TTL: the scheduler's managed identity (IMDS token, Contributor on its group) deleted "
         "sc-rg; every VM's processes stopped, nothing left, billing ended")


def check_throttle(api):
    st, body, _ = api.call("POST", "/_sim/faults", {"method": "GET", "path": "/resourcegroups$",
                                                    "status": 503, "count": 1}, token=None)
    assert st == 201, body
    assert api.arm("GET", "/resourcegroups")[0] == 503
    assert api.arm("GET", "/resourcegroups")[0] == 200
    import concurrent.futures
    u = urllib.parse.urlparse(api.url)
    path = f"/subscriptions/{SUB}/resourcegroups?api-version={V['res']}"

    def hammer(_):
        conn = http.client.HTTPSConnection(u.hostname, u.port, context=api.ctx, timeout=30)
        try:
            for _ in range(100):
                conn.request("GET", path, headers={"Authorization": f"Bearer {api.token}"})
                r = conn.getresponse()
                payload = r.read()
                if r.status == 429:
                    return r.status, json.loads(payload), {k.lower(): v for k, v in
                                                           r.getheaders()}
            return 200, None, {}
        finally:
            conn.close()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(hammer, range(8)))
    st, body, h = next((x for x in results if x[0] == 429), results[0])
    assert st == 429 and body["error"]["code"] == "SubscriptionRequestsThrottled" and \
        int(h["retry-after"]) >= 1, (st, body, h)
    step("fault rule 503 once; the read bucket → 429 SubscriptionRequestsThrottled with "
         "Retry-After")


def inside(keep):
    global KEY
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", "10.0.0.0/8", "dev", "lo"], check=True)
    import distributed
    KEY = ssh_key()
    work = tempfile.mkdtemp(prefix="az-selfcheck-")
    fed = os.path.join(work, "federated-token")
    with open(fed, "w") as fh:
        fh.write("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOngvY2x1c3RlcmN0bCJ9.c2ln\n")
    cmd = [sys.executable, os.path.join(HERE, "az_sim.py"), "serve", "--workdir", work,
           "--python", sys.executable, "--token", SECRET, "--tenant", TENANT,
           "--client-id", CLIENT, "--subscription", SUB, "--federated-token-file", fed,
           "--family-quota", "8", "--vm-create-delay", "0.5", "--network-delay", "0.2",
           "--rg-delete-delay", "0.5", "--reads-bucket", "150", "--drop-hold", "10"]
    stderr = open(os.path.join(work, "sim.stderr"), "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)
    ok = False
    try:
        ready = json.loads(proc.stdout.readline())
        assert set(ready) == {"ready", "url", "ca_file", "authority", "imds"} and \
            ready["imds"] == "http://169.254.169.254:80", ready
        api = Api(ready["url"], ready["ca_file"])
        step(f"ready line: {ready['url']}, IMDS {ready['imds']}")
        expected = []
        check_tokens(api, open(fed).read().strip(), expected)
        check_catalog(api)
        check_refusals(api, expected)
        subnet, nsg, pip, nics = net(api, expected)
        check_vm_refusals(api, nics["sc-x-nic"], expected)
        principal, expires = check_cluster(api, nics, nsg, pip, ready, distributed.__version__)
        check_capacity_and_lists(api, nics, expected)
        check_group_delete(api)
        check_ttl(api, expires)
        check_throttle(api)
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
        assert SECRET not in log and "azsim." not in log, "a secret reached the request log"
        step(f"sim-errors.jsonl holds exactly the {len(expected)} expected refusals; "
             "agent-errors.jsonl empty; no secret in requests.jsonl")
        ok = True
    finally:
        if proc.poll() is None:          # a failed check: let the simulator stop its VMs first
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
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
        rc = subprocess.call(["unshare", "-n", sys.executable, os.path.abspath(__file__),
                              "--inside"] + (["--keep"] if args.keep else []))
        left = subprocess.run(["pgrep", "-f", "az-selfcheck-"], capture_output=True,
                              text=True).stdout.split()
        print(f"{'PASS' if rc == 0 and not left else 'FAIL'} in {time.monotonic() - t0:.1f} s"
              + (f"; stray processes {left}" if left else ""), flush=True)
        sys.exit(rc or (1 if left else 0))
    print("Azure simulator self-check (inside unshare -n)", flush=True)
    sys.exit(0 if inside(args.keep) else 1)


if __name__ == "__main__":
    main()
