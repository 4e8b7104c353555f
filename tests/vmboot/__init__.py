"""vmboot: the VM boot runtime every simulated cloud's test double shares (EC2's moto agent,
the DigitalOcean simulator, later Azure and GCE): a node's cloud-init user-data, interpreted
strictly, becomes a local Dask process bound to the node's address.

    import sys; sys.path.insert(0, "tests")
    from vmboot import VmRuntime, Refusal

Modules (README.md has the contract and the VM -> local transformations):

``common``     Refusal, and the networks a node may bind and dial (loopback; 10/8 in the sandbox)
``sandbox``    the check that this is the sandbox network namespace (for 10.0.0.0/8 addresses)
``userdata``   the cloud-config: plain or base64, ``write_files``, the one ``runcmd``
``runscript``  the run script, read by a strict line-by-line sh interpreter -> ScriptPlan
``dockerrun``  the ``docker run`` line, its env file and image, and the Dask options it passes
``bootplan``   user-data -> files under DIR/<node>/root, argv, environment, boot.json
``procs``      process groups, the ``--python`` probe, log tails
``events``     DIR/agent-events.jsonl and DIR/agent-errors.jsonl
``runtime``    VmRuntime: boot, the monitor thread (exit, TTL, power-off, kills), stop
``selfcheck``  a quick end-to-end check on 127.0.0.x (python3 tests/vmboot/selfcheck.py)

userdata, runscript, dockerrun and sandbox.assess are pure (text in, plan out, or Refusal).
"""

from .common import LOOPBACK, SANDBOX_10, Refusal
from .events import EventLog
from .runtime import VmRuntime

__all__ = ["VmRuntime", "Refusal", "EventLog", "LOOPBACK", "SANDBOX_10"]
