"""Compatibility names: Refusal and the networks now live in tests/vmboot/common.py.

The Kubernetes simulator (tests/k8s) still imports them from here; new code imports vmboot.
"""

from vmboot.common import LOOPBACK, SANDBOX_10, Refusal, networks_text

__all__ = ["LOOPBACK", "SANDBOX_10", "Refusal", "networks_text"]
