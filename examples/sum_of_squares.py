"""A small Dask job for a clusterctl cluster.

It connects to the scheduler named by DASK_SCHEDULER_ADDRESS (set by `clusterctl run`, or by
`eval "$(clusterctl env)"`, which also sets the TLS client settings when TLS is on), spreads
work over the workers, checks the answer and prints it.

    clusterctl run --workers 2 -- python examples/sum_of_squares.py
"""

import os
import sys

from distributed import Client


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with Client(os.environ["DASK_SCHEDULER_ADDRESS"], timeout="30s") as client:
        workers = client.scheduler_info()["workers"]
        chunks = [range(start, min(start + 10_000, n)) for start in range(0, n, 10_000)]
        partials = client.map(lambda r: sum(x * x for x in r), chunks)
        total = client.submit(sum, partials).result()
    expected = (n - 1) * n * (2 * n - 1) // 6
    print(f"sum of squares below {n} = {total} on {len(workers)} worker(s)")
    if total != expected:
        print(f"wrong result: expected {expected}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
