"""What every module of vmboot shares: Refusal, and the networks a node may bind and dial.

A node's IP and every address Dask dials must be local to this machine: loopback
(127.0.0.0/8) anywhere, and 10.0.0.0/8 only inside the tests' sandbox network namespace, whose
only interface `lo` holds both (see `sandbox`).  Nothing here can reach another host.
"""

import ipaddress

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
# The sandbox network namespace of the Fargate, Kubernetes and VM-simulator tests holds all of
# 10.0.0.0/8 on `lo` as well; outside it these are real private addresses and are never used.
SANDBOX_10 = ipaddress.ip_network("10.0.0.0/8")
# Every network a runtime may be given.  Anything else could leave this machine.
KNOWN_NETWORKS = (LOOPBACK, SANDBOX_10)


class Refusal(Exception):
    """The user-data asks for something that cannot be given the meaning it has on a VM."""


def networks_text(networks):
    """`127.0.0.0/8` or `127.0.0.0/8 or 10.0.0.0/8`, for refusal messages."""
    return " or ".join(str(n) for n in networks)


def in_networks(ip, networks):
    """Whether `ip` (a string) is an IP literal inside one of `networks`."""
    try:
        addr = ipaddress.ip_address(ip or "")
    except ValueError:
        return False
    return any(addr in net for net in networks)


def check_networks(networks):
    """`networks` as a tuple, each one of KNOWN_NETWORKS; ValueError otherwise."""
    nets = tuple(ipaddress.ip_network(n) if isinstance(n, str) else n for n in networks)
    if not nets:
        raise ValueError("at least one network (loopback) is needed")
    bad = [str(n) for n in nets if n not in KNOWN_NETWORKS]
    if bad:
        raise ValueError(f"networks {bad} are not {networks_text(KNOWN_NETWORKS)}: a node there"
                         " could reach another machine")
    return nets
