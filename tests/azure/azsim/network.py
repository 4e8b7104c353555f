"""Addresses and the network security groups' inbound verdicts.

Owns `Addresses`: private IPs from a subnet (Azure reserves the first four addresses and the
last one; dynamic allocation takes the lowest free one — "next free", which Azure does not
guarantee — and also skips addresses any other VNet's NIC holds, because every VNet of the
simulator shares the sandbox's one 10.0.0.0/8; static requests are checked), public IPs from
`catalog.PUBLIC_POOL` (10.251.0.0/16: public addresses must be local in the sandbox), never
reused within a run. And the pure NSG functions: `inbound_verdict(world, nic, port, src)` for
the public-address forwarder (a Standard public IP is closed unless an NSG allows: no NSG on the
NIC or its subnet → drop; with NSGs, every NSG — subnet's and NIC's — must allow, each deciding
by its rules in priority order, custom then default; traffic through a public IP comes from the
`Internet` tag, never `VirtualNetwork`), the default rules, and `world_open(nsg)` (inbound
Allow rules from `*`, `Internet`, `0.0.0.0/0` or `Any`).
"""

import ipaddress
import threading

from . import catalog

DEFAULT_RULES = [
    ("AllowVnetInBound", 65000, "Inbound", "Allow", "VirtualNetwork", "VirtualNetwork",
     "Allow inbound traffic from all VMs in VNET"),
    ("AllowAzureLoadBalancerInBound", 65001, "Inbound", "Allow", "AzureLoadBalancer", "*",
     "Allow inbound traffic from azure load balancer"),
    ("DenyAllInBound", 65500, "Inbound", "Deny", "*", "*", "Deny all inbound traffic"),
    ("AllowVnetOutBound", 65000, "Outbound", "Allow", "VirtualNetwork", "VirtualNetwork",
     "Allow outbound traffic from all VMs to all VMs in VNET"),
    ("AllowInternetOutBound", 65001, "Outbound", "Allow", "*", "Internet",
     "Allow outbound traffic from all VMs to Internet"),
    ("DenyAllOutBound", 65500, "Outbound", "Deny", "*", "*", "Deny all outbound traffic"),
]
WORLD = {"*", "internet", "0.0.0.0/0", "any", "::/0"}


class AddressError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


class Addresses:
    def __init__(self):
        self._lock = threading.Lock()
        self.used = {}                 # ip -> owner id
        self._public = ipaddress.ip_network(catalog.PUBLIC_POOL)
        self._public_next = 4
        self.ever = set()

    def private(self, prefix, owner, static=None):
        net = ipaddress.ip_network(prefix, strict=False)
        with self._lock:
            if static is not None:
                ip = ipaddress.ip_address(static)
                if ip not in net:
                    raise AddressError("PrivateIPAddressNotInSubnet",
                                       f"Private static IP address {static} does not belong to "
                                       f"the range of subnet prefix {prefix}.")
                off = int(ip) - int(net.network_address)
                if off < 4 or ip == net.broadcast_address:
                    raise AddressError("PrivateIPAddressInReservedRange",
                                       f"Private static IP address {static} falls within "
                                       f"reserved IP range of subnet prefix {prefix}.")
                if static in self.used:
                    raise AddressError("PrivateIPAddressIsAllocated",
                                       f"IP configuration {owner} is using the private IP "
                                       f"address {static} which is already allocated to "
                                       f"resource {self.used[static]}.")
                self.used[static] = owner
                return static
            for off in range(4, net.num_addresses - 1):
                ip = str(net.network_address + off)
                if ip not in self.used and ip not in self.ever:
                    self.used[ip] = owner
                    self.ever.add(ip)
                    return ip
        raise AddressError("SubnetIsFull", f"Subnet with address prefix {prefix} does not have "
                                           "enough capacity for 1 IP addresses.")

    def public(self, owner):
        with self._lock:
            while self._public_next < self._public.num_addresses - 1:
                ip = str(self._public.network_address + self._public_next)
                self._public_next += 1
                if ip not in self.used:
                    self.used[ip] = owner
                    return ip
        raise AddressError("PublicIPCountLimitReached", "the public pool is exhausted")

    def release(self, ip):
        with self._lock:
            self.used.pop(ip, None)


def port_ranges(props, plural, singular):
    out = list(props.get(plural) or [])
    if props.get(singular):
        out.append(props[singular])
    return out


def port_covers(rng, port):
    rng = str(rng).strip()
    if rng == "*":
        return True
    try:
        if "-" in rng:
            lo, hi = (int(x) for x in rng.split("-", 1))
        else:
            lo = hi = int(rng)
    except ValueError:
        return False
    return lo <= port <= hi


def _prefix_matches(prefix, ip, internet, vnet_prefixes):
    p = str(prefix).strip()
    low = p.lower()
    if low in ("*", "any"):
        return True
    if low == "internet":
        return internet
    if low == "virtualnetwork":
        if internet:
            return False
        return any(ipaddress.ip_address(ip) in ipaddress.ip_network(n, strict=False)
                   for n in vnet_prefixes)
    if low == "azureloadbalancer":
        return False
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(p, strict=False)
    except ValueError:
        return False


def rules_of(nsg):
    custom = [(r["name"], r["properties"]) for r in nsg["props"].get("securityRules") or []]
    defaults = [(name, {"priority": prio, "direction": d, "access": a, "protocol": "*",
                        "sourceAddressPrefix": src, "destinationAddressPrefix": dst,
                        "sourcePortRange": "*", "destinationPortRange": "*"})
                for name, prio, d, a, src, dst, _ in DEFAULT_RULES]
    return sorted(custom, key=lambda x: x[1]["priority"]) + defaults


def nsg_decides(nsg, port, src_ip, dst_ips, vnet_prefixes):
    """(access, rule name) of the first inbound TCP rule matching."""
    for name, p in rules_of(nsg):
        if p.get("direction") != "Inbound" or str(p.get("protocol")).lower() not in ("tcp", "*"):
            continue
        if not any(port_covers(r, port) for r in port_ranges(p, "destinationPortRanges",
                                                              "destinationPortRange")):
            continue
        srcs = port_ranges(p, "sourceAddressPrefixes", "sourceAddressPrefix")
        if not any(_prefix_matches(s, src_ip, True, vnet_prefixes) for s in srcs):
            continue
        dsts = port_ranges(p, "destinationAddressPrefixes", "destinationAddressPrefix")
        if not any(_prefix_matches(d, ip, False, vnet_prefixes) or str(d) in dst_ips
                   for d in dsts for ip in dst_ips):
            continue
        return p.get("access"), name
    return "Deny", "(none)"


def inbound_verdict(world, nic, ipconf, port, src_ip):
    """("allow"|"drop", reason) for a connection to the NIC's public IP. Lock held."""
    from .netres import subnet_of
    subnet, vnet = subnet_of(world, ipconf["properties"]["subnet"]["id"])
    nsgs = []
    for ref in ((subnet or {}).get("properties", {}).get("networkSecurityGroup"),
                nic["props"].get("networkSecurityGroup")):
        if ref and ref.get("id"):
            nsg = world.get(ref["id"], "Microsoft.Network/networkSecurityGroups")
            if nsg is not None:
                nsgs.append(nsg)
    if not nsgs:
        return "drop", "a Standard public IP is closed to inbound traffic unless an NSG allows it"
    vnet_prefixes = (vnet or {}).get("props", {}).get("addressSpace", {}).get(
        "addressPrefixes") or []
    dst = [ipconf["properties"].get("privateIPAddress")]
    reasons = []
    for nsg in nsgs:
        access, rule = nsg_decides(nsg, port, src_ip, dst, vnet_prefixes)
        if access != "Allow":
            return "drop", f"NSG {nsg['name']}: rule {rule} denies tcp/{port} from {src_ip}"
        reasons.append(f"NSG {nsg['name']}: rule {rule}")
    return "allow", "; ".join(reasons)


def world_open(nsg):
    out = []
    for name, p in rules_of(nsg):
        if p.get("direction") != "Inbound" or p.get("access") != "Allow" or \
                name in ("AllowVnetInBound", "AllowAzureLoadBalancerInBound"):
            continue
        srcs = [str(s).lower() for s in port_ranges(p, "sourceAddressPrefixes",
                                                   "sourceAddressPrefix")]
        if any(s in WORLD for s in srcs):
            out.append({"rule": name, "ports": port_ranges(p, "destinationPortRanges",
                                                            "destinationPortRange"),
                        "protocol": p.get("protocol")})
    return out
