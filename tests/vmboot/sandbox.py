"""The sandbox network namespace: the only place where 10.0.0.0/8 counts as local.

Simulated clouds hand out real-looking 10.x.x.x private IPs (moto's Fargate tasks, VPC
addresses of VM simulators).  The tests run the simulator, its runtime, clusterctl and the Dask
client in a network namespace whose only interface is `lo`, holding 127.0.0.0/8 and all of
10.0.0.0/8: there every such address is local and nothing can leave.  A runtime allowed to use
10.0.0.0/8 checks that it runs there first (`sandbox_problems`), so no Dask process can ever
dial a real 10.x host.

`assess` is pure (the `ip -j` documents in, a list of problems out); `sandbox_problems` and
`check_sandbox` run `ip`.
"""

import ipaddress
import json
import subprocess

from .common import SANDBOX_10

# Route types that only describe this host's own addresses (the kernel's `local` table).
LOCAL_ROUTE_TYPES = {"local", "broadcast"}

HOW_TO = ("ip netns add NS; ip -n NS link set lo up; ip -n NS addr add 10.0.0.0/8 dev lo;"
          " ip netns exec NS ...")


def assess(links, lo_addrs, routes4, routes6):
    """Problems that make this namespace unsafe (empty when it is the sandbox)."""
    problems = []
    names = sorted(link.get("ifname", "?") for link in links)
    if names != ["lo"]:
        problems.append(f"interfaces {names}: the sandbox has `lo` only")
    lo = [link for link in links if link.get("ifname") == "lo"]
    if lo and "UP" not in lo[0].get("flags", []):
        problems.append("`lo` is down")
    has_ten = False
    for iface in lo_addrs:
        for a in iface.get("addr_info", []):
            if a.get("family") != "inet":
                continue
            try:
                net = ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False)
            except (KeyError, ValueError):
                continue
            if net == SANDBOX_10:
                has_ten = True
    if not has_ten:
        problems.append("10.0.0.0/8 is not on `lo` (ip addr add 10.0.0.0/8 dev lo)")
    for family, routes in (("IPv4", routes4), ("IPv6", routes6)):
        for r in routes:
            kind = r.get("type", "unicast")
            if kind not in LOCAL_ROUTE_TYPES or r.get("dev", "lo") != "lo":
                problems.append(f"{family} route {r.get('dst')} ({kind}, dev {r.get('dev')},"
                                f" table {r.get('table', 'main')}): the sandbox routes nothing"
                                " off this host")
    return problems


def _ip_json(*args):
    try:
        out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"cannot run `ip -j {' '.join(args)}`: {e}"
    if out.returncode != 0:
        return None, f"`ip -j {' '.join(args)}` failed: {out.stderr.strip()}"
    return json.loads(out.stdout or "[]"), None


def inspect_namespace():
    """(problems, routes checked): what is wrong with this namespace as a sandbox."""
    docs = []
    for args in (("link", "show"), ("addr", "show", "dev", "lo"),
                 ("-4", "route", "show", "table", "all"),
                 ("-6", "route", "show", "table", "all")):
        doc, err = _ip_json(*args)
        if err:
            return [err], 0
        docs.append(doc)
    return assess(*docs), len(docs[2]) + len(docs[3])


def sandbox_problems():
    """What makes this namespace unsafe for 10.0.0.0/8 addresses; empty in the sandbox."""
    return inspect_namespace()[0]


def check_sandbox(who):
    """Exit non-zero (message prefixed `who:`) unless this is the sandbox namespace; return
    what was checked."""
    problems, routes = inspect_namespace()
    if problems:
        raise SystemExit(
            f"{who}: refusing to boot outside a sandbox network namespace, because node"
            " addresses are real-looking 10.x.x.x IPs that must never leave this host:\n  - "
            + "\n  - ".join(problems)
            + "\nRun it as: " + HOW_TO
        )
    return {"interfaces": ["lo"], "lo_networks": ["127.0.0.0/8", str(SANDBOX_10)],
            "routes": routes}
