#!/usr/bin/env python3
"""moto's server for the tests, with EC2 GetConsoleOutput answered from what the instances
wrote to their console.

moto's GetConsoleOutput returns the same fixed kernel boot text for every instance, and moto
has no API to set it.  With ``--console-dir CDIR``, this runs moto's own server with that one
handler replaced: for an instance the EC2 boot agent booted (it links the instance's console
file as CDIR/<instance-id>), the answer is moto's boot text followed by everything the
instance's run script and Dask wrote to /dev/console, the latest 64 KiB of it as on EC2.  An
instance never booted keeps moto's answer.  Every other request is moto's, unchanged.

    python tests/aws/moto_server.py [--console-dir CDIR] -H 127.0.0.1 -p PORT

With ``--record DIR`` (tests/aws/recorder.py), every API request is written to
DIR/requests.jsonl with its AWS action, service and status, and ``/_sim/gate`` (the crash-point
gate of tests/simkit/gate.py) and ``/_sim/inventory`` (everything moto holds that clusterctl
could have made, tagged or not) are served: the conformance suite's view of the platform.

Without ``--console-dir`` this is ``python -m moto.server`` with two fixes that make it behave
as EC2 does: every instance of a RunInstances call gets its instance profile
(profile_on_every_instance), and concurrent CreateSecurityGroup calls of one name cannot both
succeed (atomic_security_group_creation).
"""

import argparse
import base64
import os
import sys

# EC2 returns the latest 64 KB of console output.
CONSOLE_LIMIT = 64 * 1024


def serve_consoles(console_dir):
    from moto.core.types import Base64EncodedString
    from moto.core.utils import utcnow
    from moto.ec2.responses import general

    original = getattr(general.General, "get_console_output", None)
    boot_text = getattr(general, "SAMPLE_CONSOLE_OUTPUT", None)
    if original is None or not isinstance(boot_text, str):
        raise SystemExit("moto_server: this moto has no General.get_console_output /"
                         " SAMPLE_CONSOLE_OUTPUT to replace; update tests/aws/moto_server.py")

    def get_console_output(self):
        instance_id = self._get_param("InstanceId")
        instance = self.ec2_backend.get_instance(instance_id)  # moto's errors for bad ids
        try:
            with open(os.path.join(console_dir, instance.id), "rb") as f:
                written = f.read()
        except FileNotFoundError:
            return original(self)
        output = (boot_text.encode("utf-8") + written)[-CONSOLE_LIMIT:]
        return general.ActionResult({
            "InstanceId": instance.id,
            "Timestamp": utcnow(),
            "Output": Base64EncodedString(base64.b64encode(output).decode("ascii")),
        })

    general.General.get_console_output = get_console_output


def profile_on_every_instance():
    """EC2 gives every instance of a RunInstances call the requested IamInstanceProfile; moto
    5.2.5 associates it with the first instance only (the others run without a role, so their
    metadata service has no credentials). Associate the rest too."""
    from moto.ec2.responses.instances import InstanceResponse

    original = InstanceResponse.run_instances

    def run_instances(self):
        result = original(self)
        name = self._get_param("IamInstanceProfile.Name")
        arn = self._get_param("IamInstanceProfile.Arn")
        reservation = getattr(result, "result", None)
        instances = getattr(reservation, "instances", None)
        if (name or arn) and instances is None:
            raise SystemExit("moto_server: RunInstances' result has no reservation; update"
                             " tests/aws/moto_server.py")
        for instance in (instances or [])[1:]:
            if instance.id not in self.ec2_backend.iam_instance_profile_associations:
                self.ec2_backend.associate_iam_instance_profile(
                    instance_id=instance.id, iam_instance_profile_name=name or None,
                    iam_instance_profile_arn=None if name else arn)
        return result

    InstanceResponse.run_instances = run_instances


def atomic_security_group_creation():
    """EC2 creates a security group name in a VPC at most once: of two concurrent
    CreateSecurityGroup calls, one gets InvalidGroup.Duplicate (clusterctl claims a cluster's
    name this way). moto's check-then-insert runs unlocked in its threaded server, so two
    concurrent calls can both succeed; one lock around it restores EC2's behaviour."""
    import threading

    from moto.ec2.models.security_groups import SecurityGroupBackend

    original = SecurityGroupBackend.create_security_group
    lock = threading.Lock()

    def create_security_group(self, *args, **kwargs):
        with lock:
            return original(self, *args, **kwargs)

    SecurityGroupBackend.create_security_group = create_security_group


def main(argv=None):
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--console-dir")
    parser.add_argument("--record")
    args, rest = parser.parse_known_args(argv)
    if args.record:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import moto.server
        from recorder import wrap_run_simple
        moto.server.run_simple = wrap_run_simple(moto.server.run_simple,
                                                 os.path.abspath(args.record))
    profile_on_every_instance()
    atomic_security_group_creation()
    if args.console_dir:
        os.makedirs(args.console_dir, exist_ok=True)
        serve_consoles(os.path.abspath(args.console_dir))
    from moto.server import main as moto_main
    sys.argv = [sys.argv[0], *rest]
    moto_main(rest)


if __name__ == "__main__":
    sys.exit(main())
