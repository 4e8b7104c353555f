"""A moto server (the AWS emulator) on a free loopback port, for the AWS benchmark scripts."""

import os
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(log, **env_vars):
    """Start `python -m moto.server` with `env_vars` added; return (process, endpoint URL)."""
    port = free_port()
    env = dict(os.environ, **env_vars)
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=log, env=env)
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("moto did not start")


def aws_env(url, state_dir):
    """The environment that points clusterctl and boto3 at the server, with dummy credentials."""
    return dict(os.environ, AWS_ENDPOINT_URL=url, AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing", AWS_EC2_METADATA_DISABLED="true",
                CLUSTERCTL_STATE_DIR=state_dir)
