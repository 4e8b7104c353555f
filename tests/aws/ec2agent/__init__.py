"""The boot agent behind tests/aws/ec2_agent.py, which is its entry point (run as a script).

Modules:

``common``     the loopback network and the Refusal exception
``aws``        loopback-only boto3 clients; the ``setup`` and ``inspect`` subcommands
``userdata``   the cloud-config document: base64/YAML, ``write_files``, the one ``runcmd``
``runscript``  the run script, read by a strict line-by-line sh interpreter -> ScriptPlan
``dockerrun``  the ``docker run`` line, its env file and image, and the Dask options it passes
``agent``      what both boot agents share: the loop, the event logs, process-group kills
``boot``       the ``boot`` subcommand: booting instances, power-off, when to kill a group

userdata, runscript and dockerrun are pure (text in, plan out, or Refusal); boot acts on them.
"""
