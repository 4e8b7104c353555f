"""Addresses and the cloud firewall's inbound verdicts.

Owns `Addresses` (private IPv4s from each droplet's VPC range, skipping the network address and
the gateway `.1`; public IPv4s from 10.250.0.0/16, carved into /20 "subnets" with a gateway each;
IPv6 from the documentation prefix 2001:db8::/32, listed but never routed) and the pure firewall
functions: `ports_cover(ports, port)`, `source_matches(...)`, `inbound_verdict(...)` (which the
public-address forwarder asks for every connection), `outbound_allows(...)`, and two reports for
the inventory, because traffic inside the VPC and to the internet is not forwarded and so cannot
be enforced: `vpc_view` (which ports of a droplet each other droplet of its VPC may reach by the
rules, and which of the ports its private IP really listens on — read from /proc/net/tcp — it
could not) and `egress_view` (DNS, HTTPS, HTTP to the internet). Addresses are never reused.
"""

import ipaddress
import threading

PUBLIC_POOL = ipaddress.ip_network("10.250.0.0/16")
PUBLIC_SUBNET_PREFIX = 20
V6_PREFIX = "2001:db8:d0"


class Exhausted(Exception):
    pass


class Addresses:
    def __init__(self, vpcs):
        self._lock = threading.Lock()
        self._vpc = {v["id"]: ipaddress.ip_network(v["ip_range"]) for v in vpcs}
        self._next = {vid: 2 for vid in self._vpc}
        self._public_next = 2

    def private(self, vpc_id):
        """(ip, netmask) of a new address in the VPC."""
        with self._lock:
            net = self._vpc[vpc_id]
            off = self._next[vpc_id]
            if off >= net.num_addresses - 1:
                raise Exhausted(f"VPC {vpc_id} ({net}) has no free address")
            self._next[vpc_id] = off + 1
            return str(net.network_address + off), str(net.netmask)

    def public(self):
        """(ip, netmask, gateway) of a new public address."""
        with self._lock:
            size = 2 ** (32 - PUBLIC_SUBNET_PREFIX)
            while True:
                off = self._public_next
                if off >= PUBLIC_POOL.num_addresses - 1:
                    raise Exhausted("the public pool 10.250.0.0/16 is exhausted")
                self._public_next += 1
                if off % size in (0, 1, size - 1):   # network, gateway, broadcast of the /20
                    continue
                ip = PUBLIC_POOL.network_address + off
                sub = ipaddress.ip_network(f"{ip}/{PUBLIC_SUBNET_PREFIX}", strict=False)
                return str(ip), str(sub.netmask), str(sub.network_address + 1)

    @staticmethod
    def v6(region_index, droplet_id):
        return (f"{V6_PREFIX}:{region_index:x}::{droplet_id & 0xffff:x}:{(droplet_id >> 16) & 0xffff:x}",
                64, f"{V6_PREFIX}:{region_index:x}::1")


# ----- firewall rules -----

def parse_ports(ports):
    """(low, high) for "all"/"0"/"N"/"N-M", or None when malformed."""
    p = str(ports).strip()
    if p in ("all", "0", ""):
        return (1, 65535)
    try:
        if "-" in p:
            lo, hi = p.split("-", 1)
            lo, hi = int(lo), int(hi)
        else:
            lo = hi = int(p)
    except ValueError:
        return None
    if not (1 <= lo <= hi <= 65535):
        return None
    return (lo, hi)


def ports_cover(ports, port):
    rng = parse_ports(ports)
    return rng is not None and rng[0] <= port <= rng[1]


def parse_address(text):
    """An ip_network for an address or CIDR, or None."""
    try:
        return ipaddress.ip_network(str(text).strip(), strict=False)
    except ValueError:
        return None


def droplet_addresses(d):
    out = []
    for ip in (d.private_ip if d.private_visible else None, d.public_ip if d.public_visible else None):
        if ip:
            out.append(ipaddress.ip_address(ip))
    return out


def source_matches(world, sources, src_ip):
    """Whether a rule's sources admit src_ip, and why."""
    try:
        src = ipaddress.ip_address(src_ip)
    except ValueError:
        return False, "unparsable source"
    for a in sources.get("addresses") or []:
        net = parse_address(a)
        if net is not None and net.version == src.version and src in net:
            return True, f"address {a}"
    for did in sources.get("droplet_ids") or []:
        d = world.droplets.get(did)
        if d is not None and src in droplet_addresses(d):
            return True, f"droplet {did}"
    wanted = {t.lower() for t in sources.get("tags") or []}
    if wanted:
        for d in world.droplets.values():
            if wanted & {t.lower() for t in d.tags} and src in droplet_addresses(d):
                return True, f"a droplet tagged {sorted(wanted)}"
    return False, ""


def firewalls_of(world, d):
    """The firewalls in force (status succeeded) for droplet d."""
    tags = {t.lower() for t in d.tags}
    return [fw for fw in world.firewalls.values()
            if fw["_effective"] and (d.id in fw["droplet_ids"] or
                                     tags & {t.lower() for t in fw["tags"]})]


def inbound_verdict(world, d, protocol, port, src_ip):
    """("allow"|"drop", reason) for a connection to droplet d on protocol/port from src_ip.
    Call with world.lock held."""
    fws = firewalls_of(world, d)
    if not fws:
        return "allow", "no cloud firewall applies to the droplet"
    for fw in fws:
        for rule in fw["inbound_rules"]:
            if rule["protocol"] != protocol or not ports_cover(rule["ports"], port):
                continue
            ok, why = source_matches(world, rule.get("sources") or {}, src_ip)
            if ok:
                return "allow", f"firewall {fw['name']}: inbound {protocol} {rule['ports']} from {why}"
    names = ", ".join(fw["name"] for fw in fws)
    return "drop", (f"no inbound rule of firewall(s) {names} allows {protocol}/{port} from "
                    f"{src_ip}")


def listening_ports(path="/proc/net/tcp"):
    """{ip: sorted ports} of the IPv4 TCP sockets in LISTEN state in this network namespace."""
    out = {}
    try:
        with open(path, encoding="ascii") as fh:
            lines = fh.read().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) < 4 or parts[3] != "0A":
            continue
        hexip, hexport = parts[1].split(":")
        ip = str(ipaddress.IPv4Address(bytes(reversed(bytes.fromhex(hexip)))))
        out.setdefault(ip, set()).add(int(hexport, 16))
    return {ip: sorted(ports) for ip, ports in out.items()}


def outbound_allows(world, d, protocol, port, dst_ip):
    """Whether droplet d's firewalls let it open protocol/port to dst_ip (no firewall: yes)."""
    fws = firewalls_of(world, d)
    if not fws:
        return True
    for fw in fws:
        for rule in fw["outbound_rules"]:
            if rule["protocol"] == protocol and (protocol == "icmp" or ports_cover(rule["ports"], port)) \
                    and source_matches(world, rule.get("destinations") or {}, dst_ip)[0]:
                return True
    return False


# What a booting droplet must reach on the internet (DigitalOcean's resolvers, an image
# registry, an apt mirror); checked against outbound rules only, nothing is dialled.
EGRESS = (("udp", 53, "67.207.67.2", "DNS (DigitalOcean's resolvers)"),
          ("tcp", 443, "140.82.121.34", "HTTPS (the image registry, ghcr.io)"),
          ("tcp", 80, "104.16.0.1", "HTTP (apt mirrors, when Docker must be installed)"))


def vpc_view(world):
    """For each droplet behind a firewall: the tcp ports each other droplet of its VPC may reach
    by the rules (["all"] / ["8786-8787", ...] / []), the ports its private IP listens on, and
    those of them the other droplet could not reach (inbound or its own outbound rules)."""
    out = []
    listening = listening_ports()
    droplets = list(world.droplets.values())
    for d in droplets:
        fws = firewalls_of(world, d)
        if not fws:
            continue
        ports_here = listening.get(d.private_ip, [])
        for s in droplets:
            if s.id == d.id or s.vpc_uuid != d.vpc_uuid or not s.private_visible:
                continue
            ports = []
            for fw in fws:
                for rule in fw["inbound_rules"]:
                    if rule["protocol"] != "tcp":
                        continue
                    if source_matches(world, rule.get("sources") or {}, s.private_ip)[0]:
                        p = "all" if parse_ports(rule["ports"]) == (1, 65535) else rule["ports"]
                        if p not in ports:
                            ports.append(p)
            blocked = [p for p in ports_here
                       if inbound_verdict(world, d, "tcp", p, s.private_ip)[0] != "allow"
                       or not outbound_allows(world, s, "tcp", p, d.private_ip)]
            out.append({"to": d.id, "to_name": d.name, "from": s.id, "from_name": s.name,
                        "tcp": ports, "listening": ports_here, "blocked_listening": blocked})
    return out


def egress_view(world):
    """For each droplet behind a firewall: which of EGRESS its outbound rules allow."""
    out = []
    for d in world.droplets.values():
        if not firewalls_of(world, d):
            continue
        out.append({"droplet": d.id, "name": d.name,
                    "allowed": {f"{proto}/{port} {what}": outbound_allows(world, d, proto, port, ip)
                                for proto, port, ip, what in EGRESS}})
    return out
