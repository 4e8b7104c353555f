"""Compatibility names: the process helpers now live in tests/vmboot/procs.py, and the ECS
agent's loop skeleton (BaseAgent) in tests/aws/ecsagent/agent.py.

The Kubernetes simulator (tests/k8s) still imports `probe_python` and `process_group_alive`
from here; new code imports vmboot.procs.
"""

from vmboot.procs import BASE_ENV_KEYS, probe_python, process_group_alive, refusal_detail, tail

__all__ = ["BASE_ENV_KEYS", "probe_python", "process_group_alive", "refusal_detail", "tail"]
