"""The driver the REST cloud benchmarks share (benches/azure_up.py, benches/gcp_up.py): the
command line, the rounds of cases inside the sandbox, the clean-up of what a case left, and the
result tables. Each benchmark brings its simulator and its `one_case`."""

import argparse
import collections
import os
import shutil
import signal
import statistics
import sys
import tempfile

import do_up
from do_up import available, gib, own_processes
from sandbox import enter_sandbox


def parse(doc, default_sizes):
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--clusterctl", required=True)
    p.add_argument("--python", default=os.path.expanduser("~/.cache/clusterctl-test/venv-2026.8.0/bin/python"),
                   help="interpreter that runs the simulator and the VMs' Dask processes")
    p.add_argument("--sizes", default=default_sizes, help="worker counts, one case each")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--keep", metavar="DIR", help="keep each case's directory under DIR")
    return p.parse_args()


def run_cases(opts, prefix, check_provider, one_case):
    """Every (round, size) case in the sandbox -> ({workers: [result]}, any failed)."""
    enter_sandbox()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, do_up.on_signal)
    sizes = [int(x) for x in opts.sizes.split(",")]
    results = collections.defaultdict(list)
    if opts.keep:
        os.makedirs(opts.keep, exist_ok=True)
    failed = False
    tmp = tempfile.mkdtemp(prefix=prefix, dir=opts.keep)
    try:
        # A copy: a build into a shared target directory must not swap the binary mid-run.
        binary = os.path.join(tmp, "clusterctl")
        shutil.copy2(os.path.abspath(opts.clusterctl), binary)
        opts.clusterctl = binary
        check_provider(binary)
        for r in range(opts.rounds):
            for n in sizes:
                print(f"round {r + 1}: {n} worker(s): memory available {gib(available())},"
                      f" load {os.getloadavg()[0]:.2f}", file=sys.stderr)
                res = one_case(opts, tmp, f"{r}-{n}", n)
                results[n].append(res)
                print(f"round {r + 1}: {n} worker(s): up {res['up']:.2f} s, down {res['down']:.2f} s,"
                      f" {res['up requests']}+{res['down requests']} requests,"
                      f" address {res['address']}", file=sys.stderr)
                if res["failure"]:
                    failed = True
                    print(f"FAILED: {n} worker(s): {res['failure']}", file=sys.stderr)
    finally:
        for pid in own_processes(tmp):  # only our simulator's children can work under tmp
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if not opts.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return results, failed


def print_tables(opts, results, quota, api, throttle_key, throttle_label):
    """The command, phase and resource tables. `api` names the requests (e.g. "ARM");
    `throttle_key` is the result field counting throttled answers."""
    print(f"rounds: {opts.rounds}; python: {opts.python}; cpus: {os.cpu_count()};"
          f" memory: {gib(do_up.meminfo()['MemTotal'])}; simulator: default timings, {' '.join(quota)}")
    print()
    print(f"| workers | command | wall time (median) | each round | {api} requests | {throttle_label} |"
          " by operation |")
    print("|---|---|---|---|---|---|---|")
    for n, rs in results.items():
        for cmd in ("up", "down"):
            each = ", ".join(f"{x[cmd]:.2f}" for x in rs)
            print(f"| {n} | {cmd} | {statistics.median(x[cmd] for x in rs):.2f} s | {each}"
                  f" | {statistics.median(x[cmd + ' requests'] for x in rs):g}"
                  f" | {statistics.median(x[cmd + ' ' + throttle_key] for x in rs):g}"
                  f" | {do_up.fmt_counts(do_up.median_counts([x[cmd + ' by op'] for x in rs]))} |")
    print()
    print(f"| workers | phase | wall time (median) | {api} requests | by operation |")
    print("|---|---|---|---|---|")
    for n, rs in results.items():
        for cmd in ("up", "down"):
            names = [ph for ph, _, _ in rs[0][cmd + " phases"]]
            for i, ph in enumerate(names):
                same = [x[cmd + " phases"][i] for x in rs if len(x[cmd + " phases"]) > i]
                counts = do_up.median_counts([c for _, _, c in same])
                print(f"| {n} | {cmd}: {ph} | {statistics.median(t for _, t, _ in same):.2f} s"
                      f" | {sum(counts.values()):g} | {do_up.fmt_counts(counts)} |")
    print()
    print("| workers | busiest 60 s (requests) | VM processes gone after `down` returned"
          " | memory in use at the peak (above the case's start) |")
    print("|---|---|---|---|")
    for n, rs in results.items():
        print(f"| {n} | {max(x['minute'] for x in rs)} | {statistics.median(x['stopped'] for x in rs):.2f} s"
              f" | {gib(max(x['memory peak'] for x in rs))} ({gib(max(x['memory added'] for x in rs))}) |")


def exit_on_failures(results, failed):
    if failed:
        print()
        for n, rs in results.items():
            for x in rs:
                if x["failure"]:
                    print(f"FAILED, {n} worker(s): {x['failure']}")
        sys.exit(1)
