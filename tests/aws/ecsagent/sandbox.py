"""The sandbox network namespace the ECS agent must run in, and the addresses it may use.

moto gives each Fargate task a random 10.x.x.x address.  The tests run moto, clusterctl, this
agent and the Dask client in a network namespace whose only interface is `lo`, holding
127.0.0.0/8 and all of 10.0.0.0/8: there every task address is local and nothing can leave.
`check_sandbox` refuses to boot anywhere else, so no Dask process can dial a real 10.x host.
The check itself is vmboot's (tests/vmboot/sandbox.py), shared with the VM simulators.
"""

from vmboot import common, sandbox
from vmboot.common import LOOPBACK, SANDBOX_10

# Where task IPs and dialled addresses may be: both are wholly on `lo` in the sandbox.
NETWORKS = (LOOPBACK, SANDBOX_10)

assess = sandbox.assess


def in_networks(ip):
    return common.in_networks(ip, NETWORKS)


def check_sandbox():
    """Exit non-zero unless this is the sandbox namespace; return what was checked."""
    return sandbox.check_sandbox("ecs_agent")
