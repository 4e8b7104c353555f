"""What every module of the boot agent shares: the loopback network and the Refusal exception."""

import ipaddress

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class Refusal(Exception):
    """The user-data asks for something the agent cannot interpret faithfully."""
