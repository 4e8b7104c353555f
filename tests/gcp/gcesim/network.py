"""The `default` network: addresses, and the networks / subnetworks handlers.

Owns `Addresses` (internal IPv4s from each region's auto-mode subnet of the default network,
from `.2` upward — `.1` is the gateway — or the `networkIP` the client asks for if it is free
and inside the subnet; external "public" IPv4s for ONE_TO_ONE_NAT access configs from
10.16.0.0/16, a range no subnet uses and outside default-allow-internal's 10.128.0.0/9, since
nothing but 10/8 and 127/8 is local in the tests' sandbox) and the read-only handlers
`networks.get/list`, `subnetworks.get/list/aggregatedList`. Only `default` exists (auto mode).
Addresses are released when an instance is deleted, but an external address is never reused.
"""

import ipaddress
import threading

from simkit import Response

from . import catalog
from .errors import gerr, invalid, not_found

EXTERNAL_POOL = ipaddress.ip_network("10.16.0.0/16")


class Exhausted(Exception):
    pass


class Addresses:
    def __init__(self):
        self.lock = threading.Lock()
        self.used = {}            # (project, region) -> set of ints
        self.next_external = 2

    def subnet(self, region):
        return ipaddress.ip_network(catalog.REGIONS[region]["subnet"])

    def internal(self, project, region, wanted=None):
        net = self.subnet(region)
        with self.lock:
            used = self.used.setdefault((project, region), set())
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
                if off in used:
                    raise gerr(400, "invalid", f"IP '{wanted}' is already being used by "
                               "another resource.")
                used.add(off)
                return str(ip)
            for off in range(2, net.num_addresses - 1):
                if off not in used:
                    used.add(off)
                    return str(net.network_address + off)
        raise Exhausted(f"subnetwork {net} has no free address")

    def release(self, project, region, ip):
        net = self.subnet(region)
        with self.lock:
            self.used.get((project, region), set()).discard(int(ipaddress.ip_address(ip))
                                                            - int(net.network_address))

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


def network_link(project):
    return catalog.link("projects", project, "global", "networks", "default")


def subnet_link(project, region):
    return catalog.link("projects", project, "regions", region, "subnetworks", "default")


def resolve_network(project, value, field):
    """The default network's link for `default`, `global/networks/default`, a partial or a full
    URL; 404 for any other network of the project."""
    v = (value or "global/networks/default").strip()
    for prefix in (catalog.API, "projects/" + project + "/"):
        if v.startswith(prefix):
            v = v[len(prefix):]
            if prefix == catalog.API:
                if not v.startswith(f"projects/{project}/"):
                    raise invalid(field, value, "The network must be in the instance's project.")
                v = v[len(f"projects/{project}/"):]
    if v in ("default", "global/networks/default"):
        return network_link(project)
    raise not_found(f"projects/{project}/global/networks/{v.rsplit('/', 1)[-1]}")


def resolve_subnet(project, region, value, field):
    if not value:
        return subnet_link(project, region)
    v = value.strip()
    if v.startswith(catalog.API):
        v = v[len(catalog.API):]
    if v.startswith(f"projects/{project}/"):
        v = v[len(f"projects/{project}/"):]
    if v == f"regions/{region}/subnetworks/default":
        return subnet_link(project, region)
    parts = v.split("/")
    if len(parts) == 4 and parts[0] == "regions" and parts[1] != region:
        raise invalid(field, value, "Subnetwork must be in the same region as the instance.")
    raise not_found(f"projects/{project}/regions/{region}/subnetworks/{parts[-1]}")


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


def register(app, world):
    def net_get(req):
        p = app.require_project(req)
        if req.p("network") != "default":
            raise not_found(f"projects/{p}/global/networks/{req.p('network')}")
        return Response(200, network_resource(p))

    def net_list(req):
        p = app.require_project(req)
        items = app.filtered(req, [network_resource(p)])
        return Response(200, app.page(req, "compute#networkList",
                                      catalog.link("projects", p, "global", "networks"), items))

    def sub_get(req):
        p, r = app.require_project(req), app.require_region(req)
        if req.p("subnetwork") != "default":
            raise not_found(f"projects/{p}/regions/{r}/subnetworks/{req.p('subnetwork')}")
        return Response(200, subnet_resource(p, r))

    def sub_list(req):
        p, r = app.require_project(req), app.require_region(req)
        items = app.filtered(req, [subnet_resource(p, r)])
        return Response(200, app.page(req, "compute#subnetworkList",
                                      catalog.link("projects", p, "regions", r, "subnetworks"),
                                      items))

    app.handle_op("compute.networks.get", net_get)
    app.handle_op("compute.networks.list", net_list)
    app.handle_op("compute.subnetworks.get", sub_get)
    app.handle_op("compute.subnetworks.list", sub_list)
