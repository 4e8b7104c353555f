"""What every module of the boot agent shares: the loopback network and the Refusal exception.

The ECS agent (tests/aws/ecsagent) imports these too; it also accepts SANDBOX_10.
"""

import ipaddress

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
# The ECS agent's sandbox network namespace holds all of 10.0.0.0/8 on `lo` as well.
SANDBOX_10 = ipaddress.ip_network("10.0.0.0/8")


def networks_text(networks):
    """`127.0.0.0/8` or `127.0.0.0/8 or 10.0.0.0/8`, for refusal messages."""
    return " or ".join(str(n) for n in networks)


class Refusal(Exception):
    """The user-data asks for something the agent cannot interpret faithfully."""
