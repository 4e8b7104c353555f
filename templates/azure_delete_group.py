"""clusterctl on Azure: delete the cluster's own resource group at the cluster's end.

The scheduler's end-of-life step (see templates/scheduler_ttl.py), rendered by clusterctl only
for a cluster in a resource group it made: on Azure a powered-off VM is still billed, so at
the TTL (or when the scheduler was idle past its timeout) the scheduler VM deletes the whole
group, itself included, with a token of its system-assigned managed identity from the Instance
Metadata Service. `up` gave that identity a role on this group only.

Usage: python azure_delete_group.py on_expiry.json
on_expiry.json: {"imds": "http://169.254.169.254", "resource": "<ARM audience>",
                 "url": "<ARM endpoint>/subscriptions/S/resourcegroups/G?api-version=V",
                 "deadline_seconds": N}
CLUSTERCTL_NODE_ADDRESS: this VM's private address; the metadata service identifies the VM by
the connection's source, so the token request is sent from it.

Standard library only (it runs in the Dask image). Retries what may pass (the metadata
service not ready, the role assignment not effective yet: 403, throttling, 5xx, network) with
backoff until the deadline. Exit status 0 once ARM accepted the deletion (or the group is
already gone or going), 1 otherwise. It never prints a token.
"""

import http.client
import ipaddress
import json
import os
import random
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

CALL_TIMEOUT = 20


class Retry(Exception):
    """A failure that may pass."""


def log(message):
    print(f"clusterctl: {message}", flush=True)


def source_address():
    text = os.environ.get("CLUSTERCTL_NODE_ADDRESS", "")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return None if ip.is_unspecified or ip.is_loopback else (str(ip), 0)


def imds_token(cfg):
    url = urllib.parse.urlsplit(cfg["imds"])
    query = urllib.parse.urlencode({"api-version": "2018-02-01", "resource": cfg["resource"]})
    try:
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=CALL_TIMEOUT,
                                          source_address=source_address())
        conn.request("GET", "/metadata/identity/oauth2/token?" + query,
                     headers={"Metadata": "true"})
        answer = conn.getresponse()
        body = answer.read()
        conn.close()
    except OSError as e:
        raise Retry(f"instance metadata service: {e}")
    if answer.status != 200:
        # 404/410 while the identity is being set up, 429, 5xx: all may pass.
        raise Retry(f"instance metadata service token: HTTP {answer.status} {body[:200]!r}")
    return json.loads(body)["access_token"]


def delete_group(cfg, token):
    req = urllib.request.Request(cfg["url"], method="DELETE",
                                 headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=CALL_TIMEOUT) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()
    except (urllib.error.URLError, OSError) as e:
        raise Retry(f"DELETE {cfg['url'].split('?')[0]}: {e}")


def main(path):
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    group = cfg["url"].split("?")[0].rsplit("/", 1)[-1]
    deadline = time.monotonic() + float(cfg.get("deadline_seconds", 600))
    delay = 2.0
    while True:
        wait = None
        try:
            status, headers, body = delete_group(cfg, imds_token(cfg))
            if status in (200, 202):
                log(f"ARM accepted the deletion of resource group {group} (HTTP {status}); "
                    "billing for everything in it ends as it goes")
                return 0
            if status in (204, 404):
                log(f"resource group {group} is already gone (HTTP {status})")
                return 0
            text = body[:500].decode("utf-8", "replace")
            if status == 409 and "ResourceGroupBeingDeleted" in text:
                log(f"resource group {group} is already being deleted")
                return 0
            if status not in (401, 403, 408, 429) and status < 500:
                log(f"deleting resource group {group} failed: HTTP {status} {text}")
                return 1
            # 403 AuthorizationFailed: the role assignment may not be effective yet.
            log(f"deleting resource group {group}: HTTP {status} {text[:200]}; retrying")
            retry_after = headers.get("Retry-After") if headers else None
            if retry_after and retry_after.strip().isdigit():
                wait = float(retry_after)
        except Retry as e:
            log(f"deleting resource group {group}: {e}; retrying")
        left = deadline - time.monotonic()
        if left <= 0:
            log(f"gave up deleting resource group {group} at the deadline; "
                "its VMs power off but stay billed until `clusterctl down`")
            return 1
        time.sleep(min(left, wait if wait is not None else delay * random.uniform(0.5, 1.0)))
        delay = min(delay * 2, 30.0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
