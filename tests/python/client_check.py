"""Dask client used by clusterctl's end-to-end tests.

It reads the scheduler address and TLS settings from the environment that
`clusterctl env` / `clusterctl run` provide, and prints one JSON object:

  compute N      sum of squares of 0..N-1 computed on the cluster, and the worker count
  workers        the number of workers the scheduler reports
  refuse-plain   connect without a client certificate (TLS trusting the CA, and plain TCP);
                 both must be refused by the scheduler
  http URL       GET URL, report status and body
"""

import json
import os
import socket
import ssl
import sys
import urllib.request


def client(timeout="20s"):
    from distributed import Client

    return Client(os.environ["DASK_SCHEDULER_ADDRESS"], timeout=timeout)


def main():
    mode = sys.argv[1]
    if mode == "compute":
        n = int(sys.argv[2])
        with client() as c:
            squares = c.map(lambda x: x * x, range(n))
            total = c.submit(sum, squares).result(timeout=60)
            workers = len(c.scheduler_info()["workers"])
            used = sorted({w for ws in c.who_has(squares).values() for w in ws})
        print(json.dumps({"result": total, "workers": workers, "workers_used": len(used)}))
    elif mode == "workers":
        with client() as c:
            print(json.dumps({"workers": len(c.scheduler_info()["workers"])}))
    elif mode == "refuse-plain":
        # The scheduler must refuse a peer without a certificate signed by the cluster CA: a TLS
        # handshake that trusts the CA but presents no client certificate, and a Dask client
        # speaking plain TCP.
        ca = os.environ["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"]
        for key in list(os.environ):
            if key.startswith("DASK_DISTRIBUTED__COMM__"):
                del os.environ[key]
        address = os.environ["DASK_SCHEDULER_ADDRESS"]
        host, port = address.split("://", 1)[1].rsplit(":", 1)
        outcome = {}
        ctx = ssl.create_default_context(cafile=ca)
        ctx.check_hostname = False
        try:
            with socket.create_connection((host, int(port)), timeout=5) as raw:
                with ctx.wrap_socket(raw) as tls:
                    tls.sendall(b"\0" * 8)
                    data = tls.recv(1)
            outcome["tls without client certificate"] = "connected" if data else "refused: closed"
        except (OSError, ssl.SSLError) as e:
            outcome["tls without client certificate"] = "refused: " + type(e).__name__
        from distributed import Client

        try:
            with Client(address.replace("tls://", "tcp://"), timeout="3s"):
                outcome["plain tcp"] = "connected"
        except (OSError, TimeoutError) as e:
            outcome["plain tcp"] = "refused: " + type(e).__name__
        print(json.dumps({"refused": all(v.startswith("refused") for v in outcome.values()), "attempts": outcome}))
    elif mode == "http":
        with urllib.request.urlopen(sys.argv[2], timeout=10) as r:
            print(json.dumps({"status": r.status, "body": r.read(2000).decode("utf-8", "replace")}))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
