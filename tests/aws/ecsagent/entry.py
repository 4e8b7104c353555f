"""The container command: `sh -c SCRIPT clusterctl-node ARGV...`, read strictly.

SCRIPT is the fixed entry script that providers/core/src/container.rs renders (its module doc
shows the lines).  It is matched line by line, never run: any other line, order, shell, file
outside the files root or undefined variable is a Refusal.

Pure: command + the container's variables in, EntryPlan out.
"""

import posixpath
import re

from vmboot.common import Refusal

ENTRY_NAME = "clusterctl-node"
TTL_GRACE_SECONDS = 60
KILL_AFTER_SECONDS = 30

SAFE_PATH_RE = re.compile(r"^/[A-Za-z0-9/._-]*$")
PRINTF_RE = re.compile(r"""^printf '%s' "\$(?P<var>[A-Za-z_][A-Za-z0-9_]*)" >(?P<path>\S+)$""")
CHMOD_RE = re.compile(r"^chmod (?P<mode>[0-7]{3,4}) (?P<path>\S+)$")
TAIL_LINES = [
    "left=$((CLUSTERCTL_EXPIRES - $(date +%s)))",
    '[ "$left" -gt 0 ] || exit 0',
    f'exec timeout -k {KILL_AFTER_SECONDS} "$((left + {TTL_GRACE_SECONDS}))" "$@"',
]
# sh arithmetic reads a leading 0 as octal and evaluates names recursively; accept only what
# the renderer writes, a plain decimal.
EXPIRES_RE = re.compile(r"^(0|-?[1-9][0-9]*)$")


def file_variable(path):
    """The variable that carries a file: `ca.pem` -> `CLUSTERCTL_FILE_CA_PEM` (as container.rs)."""
    base = path.rsplit("/", 1)[-1]
    return "CLUSTERCTL_FILE_" + "".join(c.upper() if c.isascii() and c.isalnum() else "_"
                                        for c in base)


class EntryFile:
    def __init__(self, path, mode, var):
        self.path = path
        self.mode = mode
        self.var = var


class EntryPlan:
    def __init__(self):
        self.root = None
        self.files = []
        self.unset = []
        self.expires = None
        self.argv = []


def _plain_path(path, what):
    if not SAFE_PATH_RE.match(path) or posixpath.normpath(path) != path or path == "/":
        raise Refusal(f"entry script: {what} {path!r} is not a plain absolute path")
    return path


def interpret_command(command, variables):
    """`command`: the container command list.  `variables`: every name the container's
    environment defines (plain `environment` and `secrets`) -> its value.  -> EntryPlan."""
    if not isinstance(command, list) or not all(isinstance(w, str) for w in command):
        raise Refusal(f"container command {command!r} is not a list of strings")
    if len(command) < 4 or command[0] != "sh" or command[1] != "-c" or command[3] != ENTRY_NAME:
        raise Refusal(f"container command starts {command[:2] + command[3:4]!r}, not"
                      f" ['sh', '-c', SCRIPT, {ENTRY_NAME!r}, ...]: only clusterctl's entry"
                      " script is interpreted")
    plan = EntryPlan()
    plan.argv = command[4:]
    lines = command[2].split("\n")
    head = ["set -eu", "umask 077"]
    if lines[:2] != head:
        raise Refusal(f"entry script: starts {lines[:2]!r}, expected {head!r}")
    if len(lines) < 3 or not lines[2].startswith("mkdir -p "):
        raise Refusal(f"entry script line 3 {lines[2:3]!r} is not 'mkdir -p ROOT'")
    plan.root = _plain_path(lines[2][len("mkdir -p "):], "files root")

    body = lines[3:]
    if body[-len(TAIL_LINES):] != TAIL_LINES or len(body) < len(TAIL_LINES):
        raise Refusal("entry script: the last lines are not the TTL backstop"
                      f" {TAIL_LINES!r}: got {body[-len(TAIL_LINES):]!r}")
    body = body[:-len(TAIL_LINES)]

    i = 0
    seen_paths = set()
    while i < len(body) and body[i].startswith("printf "):
        m = PRINTF_RE.match(body[i])
        if not m:
            raise Refusal(f"entry script: {body[i]!r} is not printf '%s' \"$VAR\" >FILE")
        var, path = m.group("var"), m.group("path")
        _plain_path(path, "file")
        if posixpath.dirname(path) != plan.root:
            raise Refusal(f"entry script: file {path} is not directly under the files root"
                          f" {plan.root}")
        if path in seen_paths:
            raise Refusal(f"entry script: file {path} is written twice")
        seen_paths.add(path)
        if var != file_variable(path):
            raise Refusal(f"entry script: {path} is written from ${var}, but its variable is"
                          f" ${file_variable(path)}")
        if var not in variables:
            raise Refusal(f"entry script: ${var} (for {path}) is defined neither by the"
                          " container's environment nor by its secrets; `set -u` would stop"
                          " the container")
        if i + 1 >= len(body):
            raise Refusal(f"entry script: no chmod after writing {path}")
        c = CHMOD_RE.match(body[i + 1])
        if not c or c.group("path") != path:
            raise Refusal(f"entry script: {body[i + 1]!r} is not 'chmod MODE {path}'")
        plan.files.append(EntryFile(path, int(c.group("mode"), 8), var))
        i += 2

    rest = body[i:]
    file_vars = [f.var for f in plan.files]
    if plan.files:
        expected = "unset " + " ".join(file_vars)
        if rest != [expected]:
            raise Refusal(f"entry script: after the files expected {expected!r}, got {rest!r}")
        plan.unset = file_vars
    elif rest:
        raise Refusal(f"entry script: unexpected lines {rest!r}")

    for name in variables:
        if name.startswith("CLUSTERCTL_FILE_") and name not in file_vars:
            raise Refusal(f"${name} is defined, but no file line writes or unsets it, so it"
                          " would reach Dask's environment")
    if "CLUSTERCTL_EXPIRES" not in variables:
        raise Refusal("entry script: $CLUSTERCTL_EXPIRES is not defined; `set -u` would stop"
                      " the container")
    expires = variables["CLUSTERCTL_EXPIRES"]
    if not EXPIRES_RE.match(expires):
        raise Refusal(f"CLUSTERCTL_EXPIRES={expires!r} is not a plain decimal integer")
    plan.expires = int(expires)

    if len(plan.argv) < 2 or plan.argv[0] != "dask" or plan.argv[1] not in ("scheduler",
                                                                           "worker"):
        raise Refusal(f"container argv {plan.argv[:2]!r} is not 'dask scheduler|worker'")
    return plan
