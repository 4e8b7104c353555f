"""Networks: the `default` auto-mode network and custom-mode networks given at start
(`--network NETWORK:SUBNET:REGION:CIDR`, one subnet per region; no default firewall rules on
them: only the implied deny-ingress), addresses, and the networks / subnetworks handlers.

Owns `Addresses` (internal IPv4s from the instance's subnet: each region's auto-mode subnet of
the default network or a custom subnet,
from `.2` upward — `.1` is the gateway — or the `networkIP` the client asks for if it is free
and inside the subnet; external "public" IPv4s for ONE_TO_ONE_NAT access configs from
10.16.0.0/16, a range no subnet uses and outside default-allow-internal's 10.128.0.0/9, since
nothing but 10/8 and 127/8 is local in the tests' sandbox) and the read-only handlers
`networks.get/list`, `subnetworks.get/list`. A NIC on a custom-mode network must name one of
its subnets (400 otherwise), and a subnet must belong to the NIC's network.
Addresses are released when an instance is deleted, but an external address is never reused.
A `networkIP` already in use fails the insert's operation (`IpTaken`); `POST /_sim/steal-ips
{"count": N}` makes another resource take each of the next N `networkIP`s just before the
insert asks for it (a concurrent creator), listed in the inventory's `foreign_addresses`.
"""

import ipaddress
import threading

from simkit import Response

from . import catalog
from .errors import gerr, invalid, not_found

EXTERNAL_POOL = ipaddress.ip_network("10.16.0.0/16")


class Exhausted(Exception):
    pass


class IpTaken(Exception):
    """The `networkIP` asked for is held by another resource: Compute fails the insert's
    operation with IP_IN_USE_BY_ANOTHER_RESOURCE (seen in GoogleCloudPlatform/compute-image-tools
    #659 and F5Networks/f5-google-gdm-templates#78)."""

    def error(self):
        return {"code": "IP_IN_USE_BY_ANOTHER_RESOURCE",
                "message": f"IP '{self.args[0]}' is already being used by another resource."}


class Addresses:
    def __init__(self, custom=()):
        self.lock = threading.Lock()
        self.used = {}            # (project, region, subnet name) -> set of ints
        self.next_external = 2
        self.steal = 0            # the next N networkIPs asked for are taken first (control)
        self.foreign = []         # addresses held by "other resources" ({project, region, ip})
        # custom-mode networks: name -> {region: (subnet name, ip_network)}
        self.custom = {}
        for spec in custom:
            name, sub, region, cidr = parse_custom(spec)
            self.custom.setdefault(name, {})[region] = (sub, cidr)

    def subnet(self, region, name="default"):
        if name == "default":
            return ipaddress.ip_network(catalog.REGIONS[region]["subnet"])
        for subnets in self.custom.values():
            if region in subnets and subnets[region][0] == name:
                return subnets[region][1]
        raise KeyError(f"no subnetwork {name} in {region}")

    def internal(self, project, region, wanted=None, subnet="default"):
        net = self.subnet(region, subnet)
        with self.lock:
            used = self.used.setdefault((project, region, subnet), set())
            if wanted is not None:
                try:
                    ip = ipaddress.ip_address(wanted)
                except ValueError:
                    raise invalid("resource.networkInterfaces[0].networkIP", wanted,
                                  "Must be a valid IPv4 address.")
                off = int(ip) - int(net.network_address)
                if ip not in net or off < 2 or off >= net.num_addresses - 1:
                    raise invalid("resource.networkInterfaces[0].networkIP", wanted,
                                  f"IP address is not in the subnetwork's range {net}.")
                if self.steal > 0 and off not in used:
                    self.steal -= 1
                    used.add(off)
                    self.foreign.append({"project": project, "region": region, "ip": str(ip)})
                if off in used:
                    raise IpTaken(str(ip))
                used.add(off)
                return str(ip)
            for off in range(2, net.num_addresses - 1):
                if off not in used:
                    used.add(off)
                    return str(net.network_address + off)
        raise Exhausted(f"subnetwork {net} has no free address")

    def release(self, project, region, ip, subnet="default"):
        net = self.subnet(region, subnet)
        with self.lock:
            self.used.get((project, region, subnet), set()).discard(
                int(ipaddress.ip_address(ip)) - int(net.network_address))

    def external(self):
        with self.lock:
            while True:
                off = self.next_external
                if off >= EXTERNAL_POOL.num_addresses - 1:
                    raise Exhausted("the external pool 10.16.0.0/16 is exhausted")
                self.next_external += 1
                if off % 256 in (0, 1, 255):
                    continue
                return str(EXTERNAL_POOL.network_address + off)


def parse_custom(spec):
    """`NETWORK:SUBNET:REGION:CIDR` (the simulator's `--network`)."""
    parts = spec.split(":")
    if len(parts) != 4 or parts[2] not in catalog.REGIONS:
        raise ValueError(f"--network {spec!r}: NETWORK:SUBNET:REGION:CIDR with a known region")
    cidr = ipaddress.ip_network(parts[3])
    if not cidr.subnet_of(ipaddress.ip_network("10.0.0.0/8")) or \
            cidr.overlaps(EXTERNAL_POOL) or cidr.overlaps(ipaddress.ip_network("10.128.0.0/9")):
        raise ValueError(f"--network {spec!r}: the range must be in 10.0.0.0/8, outside "
                         "10.128.0.0/9 (auto mode) and 10.16.0.0/16 (external addresses)")
    return parts[0], parts[1], parts[2], cidr


def network_link(project, name="default"):
    return catalog.link("projects", project, "global", "networks", name)


def subnet_link(project, region, name="default"):
    return catalog.link("projects", project, "regions", region, "subnetworks", name)


def _relative(project, value, field):
    v = value.strip()
    for prefix in (catalog.API, "projects/" + project + "/"):
        if v.startswith(prefix):
            v = v[len(prefix):]
            if prefix == catalog.API:
                if not v.startswith(f"projects/{project}/"):
                    raise invalid(field, value, "The network must be in the instance's project.")
                v = v[len(f"projects/{project}/"):]
    return v


def resolve_network(project, value, field, nets=None):
    """The link of `default` or a custom network given as a name, `global/networks/N`, a
    partial or a full URL; 404 for any other network of the project."""
    v = _relative(project, value or "global/networks/default", field)
    name = v[len("global/networks/"):] if v.startswith("global/networks/") else v
    if name == "default" or (nets is not None and name in nets.custom):
        return network_link(project, name)
    raise not_found(f"projects/{project}/global/networks/{name.rsplit('/', 1)[-1]}")


def resolve_subnet(project, region, value, field, network, nets=None):
    """The subnetwork of an instance's NIC on `network` (a link): the auto-mode subnet when
    none is named on `default`; a custom-mode network needs one of its own subnets."""
    net_name = network.rsplit("/", 1)[-1]
    if not value:
        if net_name == "default":
            return subnet_link(project, region)
        raise gerr(400, "invalid", f"Invalid value for field '{field}': ''. Subnetwork should "
                   f"be specified for custom subnetmode network "
                   f"'projects/{project}/global/networks/{net_name}'.")
    v = _relative(project, value, field)
    parts = v.split("/")
    if len(parts) == 4 and parts[0] == "regions" and parts[2] == "subnetworks":
        if parts[1] != region:
            raise invalid(field, value, "Subnetwork must be in the same region as the instance.")
        name = parts[3]
    elif len(parts) == 1:
        name = parts[0]
    else:
        raise invalid(field, value, "Not a subnetwork reference.")
    owner = None
    if name == "default":
        owner = "default"
    elif nets is not None:
        owner = next((n for n, subs in nets.custom.items()
                      if region in subs and subs[region][0] == name), None)
    if owner is None:
        raise not_found(f"projects/{project}/regions/{region}/subnetworks/{name}")
    if owner != net_name:
        raise invalid(field, value, f"Subnetwork '{name}' does not belong to network "
                      f"'{net_name}'.")
    return subnet_link(project, region, name)


def network_resource(project):
    return {"kind": "compute#network", "id": catalog.num_id("net", project, "default"),
            "creationTimestamp": catalog.CREATED, "name": "default",
            "description": "Default network for the project", "selfLink": network_link(project),
            "selfLinkWithId": catalog.link("projects", project, "global", "networks",
                                           catalog.num_id("net", project, "default")),
            "autoCreateSubnetworks": True,
            "subnetworks": [subnet_link(project, r) for r in catalog.REGIONS],
            "routingConfig": {"routingMode": "REGIONAL"},
            "networkFirewallPolicyEnforcementOrder": "AFTER_CLASSIC_FIREWALL"}


def subnet_resource(project, region):
    net = ipaddress.ip_network(catalog.REGIONS[region]["subnet"])
    return {"kind": "compute#subnetwork", "id": catalog.num_id("subnet", project, region),
            "creationTimestamp": catalog.CREATED, "name": "default",
            "network": network_link(project), "ipCidrRange": str(net),
            "gatewayAddress": str(net.network_address + 1),
            "region": catalog.region_link(project, region),
            "selfLink": subnet_link(project, region), "privateIpGoogleAccess": False,
            "fingerprint": "Fc4kqlB9D2c=", "stackType": "IPV4_ONLY", "purpose": "PRIVATE"}


def custom_network_resource(project, name, subnets):
    return {"kind": "compute#network", "id": catalog.num_id("net", project, name),
            "creationTimestamp": catalog.CREATED, "name": name,
            "selfLink": network_link(project, name),
            "selfLinkWithId": catalog.link("projects", project, "global", "networks",
                                           catalog.num_id("net", project, name)),
            "autoCreateSubnetworks": False,
            "subnetworks": [subnet_link(project, r, s) for r, (s, _) in subnets.items()],
            "routingConfig": {"routingMode": "REGIONAL"},
            "networkFirewallPolicyEnforcementOrder": "AFTER_CLASSIC_FIREWALL"}


def custom_subnet_resource(project, region, network, name, net):
    return {"kind": "compute#subnetwork", "id": catalog.num_id("subnet", project, region, name),
            "creationTimestamp": catalog.CREATED, "name": name,
            "network": network_link(project, network), "ipCidrRange": str(net),
            "gatewayAddress": str(net.network_address + 1),
            "region": catalog.region_link(project, region),
            "selfLink": subnet_link(project, region, name), "privateIpGoogleAccess": False,
            "fingerprint": "Fc4kqlB9D2c=", "stackType": "IPV4_ONLY", "purpose": "PRIVATE"}


def register(app, world):
    nets = world.vms.addresses

    def networks(p):
        return [network_resource(p)] + [custom_network_resource(p, n, subs)
                                        for n, subs in sorted(nets.custom.items())]

    def subnets(p, r):
        return [subnet_resource(p, r)] + [custom_subnet_resource(p, r, n, subs[r][0], subs[r][1])
                                          for n, subs in sorted(nets.custom.items()) if r in subs]

    def net_get(req):
        p = app.require_project(req)
        found = [n for n in networks(p) if n["name"] == req.p("network")]
        if not found:
            raise not_found(f"projects/{p}/global/networks/{req.p('network')}")
        return Response(200, found[0])

    def net_list(req):
        p = app.require_project(req)
        items = app.filtered(req, networks(p))
        return Response(200, app.page(req, "compute#networkList",
                                      catalog.link("projects", p, "global", "networks"), items))

    def sub_get(req):
        p, r = app.require_project(req), app.require_region(req)
        found = [s for s in subnets(p, r) if s["name"] == req.p("subnetwork")]
        if not found:
            raise not_found(f"projects/{p}/regions/{r}/subnetworks/{req.p('subnetwork')}")
        return Response(200, found[0])

    def sub_list(req):
        p, r = app.require_project(req), app.require_region(req)
        items = app.filtered(req, subnets(p, r))
        return Response(200, app.page(req, "compute#subnetworkList",
                                      catalog.link("projects", p, "regions", r, "subnetworks"),
                                      items))

    app.handle_op("compute.networks.get", net_get)
    app.handle_op("compute.networks.list", net_list)
    app.handle_op("compute.subnetworks.get", sub_get)
    app.handle_op("compute.subnetworks.list", sub_list)
