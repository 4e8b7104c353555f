"""The ECS boot agent behind tests/aws/ecs_agent.py, which is its entry point (run as a script).

Modules:

``sandbox``   the network namespace it must run in (only `lo`, holding 127/8 and 10/8)
``taskdef``   the task definition and task: Fargate checks, the one `dask` container
``roles``     execution/task roles (trust, permissions) and fetching secrets from SSM
``entry``     the container command `sh -c SCRIPT clusterctl-node ARGV`, read line by line
``cwlogs``    the awslogs driver: dask.log plus PutLogEvents to the task's stream
``aws``       the ``setup``, ``inspect`` and ``log-lines`` subcommands
``boot``      the ``boot`` subcommand: booting tasks, StopTask, when to kill a group
``selfcheck`` a by-hand end-to-end check in a throwaway namespace (not run by CI)

It reuses the EC2 agent's package (`ec2agent`): Refusal and the address networks (common),
the loopback-only clients and the security-group inspection (aws), the Dask option parser
and image check (dockerrun), and the agent skeleton: loop, event logs, process groups and
kills (agent).  taskdef, entry and the policy evaluation in roles are pure; boot acts on what
they return.
"""
