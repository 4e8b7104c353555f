"""The run script (run.sh) that runcmd starts, read by a strict line-by-line sh interpreter.

Pure functions, script text -> ScriptPlan, or Refusal.
"""

import re
import shlex

from .common import Refusal

DOCKER_INSTALL_RE = re.compile(
    r"^command -v docker >/dev/null 2>&1 \|\| \{ (?P<body>[^{}]+); \}$"
)
# The key fetcher clusterctl renders when a VM's keys come from a secret store.
FETCH_SCRIPT = "/fetch_secrets.py"
APT_GET_RE = re.compile(r"^apt-get( [A-Za-z0-9._=+-]+)+$")


class LogicalLine:
    def __init__(self, lineno, text, ops, expansions, hazards):
        self.lineno = lineno
        self.text = text
        self.ops = ops
        self.expansions = expansions
        self.hazards = hazards


def scan_shell(src):
    """Split sh source into logical lines (comments dropped, backslash-newlines joined, quotes
    kept for shlex) and record, per line, what shlex.split alone would hide: unquoted operator
    characters, parameter/command expansions, globs, tildes and escapes shlex reads differently
    from sh."""
    out = []
    cur, ops, exps, hazards = [], [], [], []
    lineno = start = 1
    state = "plain"  # plain | single | double
    i, n = 0, len(src)
    word_breaks = set(" \t;&|<>()")  # an escaped pair like "\\ " is not a break

    def flush():
        text = "".join(cur).strip()
        if text:
            out.append(LogicalLine(start, text, "".join(ops), list(exps), list(hazards)))
        cur.clear()
        ops.clear()
        exps.clear()
        hazards.clear()

    def expansion_at(j):
        if src.startswith("$?", j):
            return "$?", 2
        if src[j] == "`":
            return "`", 1
        m = re.match(r"\$(\{[^}]*\}?|\(|[A-Za-z_][A-Za-z0-9_]*|.)?", src[j:])
        return m.group(0), len(m.group(0))

    while i < n:
        c = src[i]
        if state == "plain":
            if c == "\\":
                if i + 1 < n and src[i + 1] == "\n":
                    i += 2
                    lineno += 1
                    continue
                if i + 1 >= n:
                    hazards.append("a backslash at the end of the script")
                    i += 1
                    continue
                cur.append(src[i:i + 2])
                i += 2
                continue
            if c == "#" and (not cur or cur[-1] in word_breaks):
                while i < n and src[i] != "\n":
                    i += 1
                continue
            if c == "\n":
                flush()
                lineno += 1
                start = lineno
                i += 1
                continue
            if c == "'":
                state = "single"
            elif c == '"':
                state = "double"
            elif c in ";&|<>()":
                ops.append(c)
            elif c in "$`":
                tok, width = expansion_at(i)
                exps.append(tok)
                cur.append(src[i:i + width])
                i += width
                continue
            elif c in "*?[":
                hazards.append(f"unquoted glob character {c!r}")
            elif c == "~" and (not cur or cur[-1] in word_breaks):
                hazards.append("unquoted tilde expansion")
            cur.append(c)
            i += 1
        elif state == "single":
            if c == "'":
                state = "plain"
            elif c == "\n":
                hazards.append("a quoted string spanning lines")
                lineno += 1
            cur.append(c)
            i += 1
        else:  # double
            if c == "\\" and i + 1 < n:
                nxt = src[i + 1]
                if nxt == "\n":
                    i += 2
                    lineno += 1
                    continue
                if nxt in "$`":
                    hazards.append(f"escaped {nxt!r} inside double quotes")
                cur.append(src[i:i + 2])
                i += 2
                continue
            if c == '"':
                state = "plain"
            elif c in "$`":
                tok, width = expansion_at(i)
                exps.append(tok)
                cur.append(src[i:i + width])
                i += width
                continue
            elif c == "\n":
                hazards.append("a quoted string spanning lines")
                lineno += 1
            cur.append(c)
            i += 1
    if state != "plain":
        raise Refusal(f"run script line {start}: unterminated {state}-quoted string")
    flush()
    return out


class ScriptPlan:
    def __init__(self):
        self.ttl_minutes = None
        self.docker_words = None
        self.docker_line = None
        self.fetch_words = None  # the `docker run ... python fetch_secrets.py CONFIG` before Dask
        self.fetch_line = None
        self.power_off_on_exit = False
        self.echo_before = []  # lines printed before Dask starts
        self.echo_after = []  # templates ("$?" = Dask's exit status) printed after it exits
        self.ignored = []  # lines accepted as no-ops here (docker install)


def interpret_run_script(src):
    lines = src.split("\n")
    if lines[0] != "#!/bin/sh":
        raise Refusal(f"run script must start with '#!/bin/sh', found {lines[0]!r}")
    plan = ScriptPlan()
    phase = "before-dask"  # -> "after-dask" -> "powered-off"
    for line in scan_shell(src):
        where = f"run script line {line.lineno} ({line.text[:80]!r})"
        if line.hazards:
            raise Refusal(f"{where}: {'; '.join(sorted(set(line.hazards)))}")
        if phase == "powered-off":
            raise Refusal(f"{where}: nothing may follow 'shutdown -P now'")

        install = DOCKER_INSTALL_RE.match(line.text)
        if install:
            if phase != "before-dask" or plan.ignored:
                raise Refusal(f"{where}: the docker install line must come once, before docker run")
            if line.expansions:
                raise Refusal(f"{where}: expansions {line.expansions} in the docker install line")
            for part in install.group("body").split(" && "):
                if not APT_GET_RE.match(part):
                    raise Refusal(f"{where}: the docker install fallback runs {part!r}, "
                                  "not a plain apt-get command")
            plan.ignored.append(line.text)
            continue

        try:
            words = shlex.split(line.text)
        except ValueError as e:
            raise Refusal(f"{where}: cannot split into words: {e}")
        if not words:
            raise Refusal(f"{where}: an empty command")
        cmd = words[0]

        if cmd == "echo":
            if line.ops:
                raise Refusal(f"{where}: shell operators {line.ops!r} in an echo line")
            bad = [e for e in line.expansions if e != "$?"]
            if bad:
                raise Refusal(f"{where}: expansions {bad} (only $? is interpreted in echo)")
            text = " ".join(words[1:])
            if text.count("$?") != len(line.expansions):
                raise Refusal(f"{where}: a literal '$?' the runtime cannot tell from an expansion")
            if any(w.startswith("-") for w in words[1:2]) or "\\" in text:
                raise Refusal(f"{where}: echo options or backslash escapes are not interpreted")
            if phase == "before-dask":
                plan.echo_before.append(text.replace("$?", "0"))
            else:
                plan.echo_after.append(text)
            continue

        if line.expansions:
            raise Refusal(f"{where}: shell expansions {line.expansions} are not interpreted")

        if cmd == "shutdown":
            if line.ops:
                if line.ops != "||" or words[-2:] != ["||", "true"]:
                    raise Refusal(f"{where}: only a trailing '|| true' may follow shutdown")
                words = words[:-2]
            if len(words) < 3 or words[1] != "-P":
                raise Refusal(f"{where}: expected 'shutdown -P +MINUTES|now [message]'")
            when = words[2]
            if re.fullmatch(r"\+[0-9]+", when):
                if phase != "before-dask" or plan.ttl_minutes is not None:
                    raise Refusal(f"{where}: the TTL shutdown must come once, before docker run")
                plan.ttl_minutes = int(when[1:])
            elif when == "now":
                if phase != "after-dask":
                    raise Refusal(f"{where}: 'shutdown -P now' before Dask ran would power off"
                                  " the machine at boot")
                plan.power_off_on_exit = True
                phase = "powered-off"
            else:
                raise Refusal(f"{where}: shutdown time {when!r} is not '+MINUTES' or 'now'")
            continue

        if line.ops:
            raise Refusal(f"{where}: shell operators {line.ops!r} are not interpreted here")

        if words == ["set", "-u"]:
            continue

        if words[:2] == ["docker", "run"]:
            if phase != "before-dask":
                raise Refusal(f"{where}: a second docker run")
            if len(words) >= 3 and words[-3] == "python" and words[-2].endswith(FETCH_SCRIPT):
                # The key fetch (templates/fetch_secrets.py): once, before Dask's docker run.
                if plan.fetch_words is not None:
                    raise Refusal(f"{where}: a second key fetch")
                plan.fetch_words = words
                plan.fetch_line = line.lineno
                continue
            plan.docker_words = words
            plan.docker_line = line.lineno
            phase = "after-dask"
            continue

        raise Refusal(f"{where}: command {cmd!r} is not interpreted here")

    if plan.docker_words is None:
        raise Refusal("the run script has no docker run command")
    return plan
