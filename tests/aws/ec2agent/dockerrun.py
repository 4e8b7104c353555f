"""Compatibility names: the `docker run` interpreter now lives in tests/vmboot/dockerrun.py.

The Kubernetes simulator (tests/k8s) still imports `translate_dask_args` and `parse_address`
from here; new code imports vmboot.dockerrun.
"""

from vmboot.dockerrun import (
    DASK_OPTIONS, IMAGE_RE, interpret_docker_run, parse_address, parse_env_file,
    translate_dask_args,
)

__all__ = ["DASK_OPTIONS", "IMAGE_RE", "interpret_docker_run", "parse_address",
           "parse_env_file", "translate_dask_args"]
