"""The sandbox network namespace the ECS agent must run in, and the addresses it may use.

moto gives each Fargate task a random 10.x.x.x address.  The tests run moto, clusterctl, this
agent and the Dask client in a network namespace whose only interface is `lo`, holding
127.0.0.0/8 and all of 10.0.0.0/8: there every task address is local and nothing can leave.
`check_sandbox` refuses to boot anywhere else, so no Dask process can dial a real 10.x host.

`assess` is pure (the `ip -j` documents in, a list of problems out); `check_sandbox` runs `ip`.
"""

import ipaddress
import json
import subprocess

from ec2agent.common import LOOPBACK, SANDBOX_10

# Where task IPs and dialled addresses may be: both are wholly on `lo` in the sandbox.
NETWORKS = (LOOPBACK, SANDBOX_10)

# Route types that only describe this host's own addresses (the kernel's `local` table).
LOCAL_ROUTE_TYPES = {"local", "broadcast"}


def in_networks(ip):
    try:
        addr = ipaddress.ip_address(ip or "")
    except ValueError:
        return False
    return any(addr in net for net in NETWORKS)


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
        raise SystemExit(f"ecs_agent: cannot run `ip -j {' '.join(args)}`: {e}")
    if out.returncode != 0:
        raise SystemExit(f"ecs_agent: `ip -j {' '.join(args)}` failed: {out.stderr.strip()}")
    return json.loads(out.stdout or "[]")


def check_sandbox():
    """Exit non-zero unless this is the sandbox namespace; return what was checked."""
    links = _ip_json("link", "show")
    lo_addrs = _ip_json("addr", "show", "dev", "lo")
    routes4 = _ip_json("-4", "route", "show", "table", "all")
    routes6 = _ip_json("-6", "route", "show", "table", "all")
    problems = assess(links, lo_addrs, routes4, routes6)
    if problems:
        raise SystemExit(
            "ecs_agent: refusing to boot outside a sandbox network namespace, because task"
            " addresses are real-looking 10.x.x.x IPs that must never leave this host:\n  - "
            + "\n  - ".join(problems)
            + "\nRun it as: ip netns add NS; ip -n NS link set lo up;"
              " ip -n NS addr add 10.0.0.0/8 dev lo; ip netns exec NS ..."
        )
    return {"interfaces": ["lo"], "lo_networks": [str(n) for n in NETWORKS],
            "routes": len(routes4) + len(routes6)}
