"""The EC2 boot agent behind tests/aws/ec2_agent.py, which is its entry point (run as a script):
a thin moto adapter over the shared VM runtime, tests/vmboot.

Modules:

``aws``        loopback-only boto3 clients; the ``setup`` and ``inspect`` subcommands
``boot``       the ``boot`` subcommand: moto's instances -> vmboot.VmRuntime, and power-off
               through the API (instanceInitiatedShutdownBehavior)

The user-data interpretation (cloud-config, run script, docker run) and the processes are
vmboot's; this package only knows EC2.  Importing it puts tests/ on sys.path for vmboot.
"""

import os
import sys

_TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
