"""Dask client used by clusterctl's end-to-end tests.

It reads the scheduler address and TLS settings from the environment that
`clusterctl env` / `clusterctl run` provide, and prints one JSON object:

  compute N      sum of squares of 0..N-1 computed on the cluster, and the worker count
  workers        the number of workers the scheduler reports
  refuse-plain   connect with TLS trusting the CA but without a client certificate, with a
                 certificate from another CA, and with plain TCP; the scheduler must refuse all
                 (the TLS ones in TLS: a timeout does not count)
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


def tls_attempt(host, port, ca, identity):
    """One TLS connection trusting `ca`, presenting `identity` ((cert, key) files) if given:
    `refused: ...` when the server rejects it in TLS, else what happened instead."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    if identity:
        ctx.load_cert_chain(*identity)
    try:
        with socket.create_connection((host, port), timeout=10) as raw:
            with ctx.wrap_socket(raw) as tls:
                # TLS 1.3 servers judge the client certificate after the handshake: the alert
                # arrives with the first read.
                tls.sendall(b"\0" * 8)
                data = tls.recv(1)
        return "connected" if data else "refused: closed by the server"
    except socket.timeout:
        return "timeout (not a refusal)"
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        return "refused: " + type(e).__name__ + " " + str(e)[:80]
    except OSError as e:
        return "error: " + type(e).__name__ + " " + str(e)[:80]


def foreign_identity():
    """A client certificate and key from a throwaway CA that is not the cluster's."""
    import datetime
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another cluster's CA")])
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dask-client")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out = tempfile.mkdtemp(prefix="foreign-identity-")
    cert_file, key_file = os.path.join(out, "cert.pem"), os.path.join(out, "key.pem")
    with open(cert_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_file, key_file


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
        # The scheduler must refuse a peer without a certificate signed by the cluster CA. Each
        # attempt is a TLS handshake that trusts the cluster CA, presenting no client
        # certificate, then one from another CA; it counts as refused only when TLS itself fails
        # (an alert, or the server closing the connection) -- a timeout proves nothing. A Dask
        # client speaking plain TCP is tried too.
        ca = os.environ["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"]
        # The client's certificate is an identity of its own: client authentication only, so
        # a copy of it cannot stand in for a node (serve as a scheduler or worker).
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID

        with open(os.environ["DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT"], "rb") as f:
            eku = x509.load_pem_x509_certificate(f.read()).extensions.get_extension_for_class(
                x509.ExtendedKeyUsage).value
        client_only = list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        for key in list(os.environ):
            if key.startswith("DASK_DISTRIBUTED__COMM__"):
                del os.environ[key]
        address = os.environ["DASK_SCHEDULER_ADDRESS"]
        host, port = address.split("://", 1)[1].rsplit(":", 1)
        outcome = {
            "client certificate as a server": "refused: client authentication only"
            if client_only else f"allowed: extended key usages {[u._name for u in eku]}",
            "tls without client certificate": tls_attempt(host, int(port), ca, None),
            "tls with another CA's certificate": tls_attempt(host, int(port), ca, foreign_identity()),
        }
        from distributed import Client

        try:
            with Client(address.replace("tls://", "tcp://"), timeout="3s"):
                outcome["plain tcp"] = "connected"
        except (OSError, TimeoutError) as e:
            outcome["plain tcp"] = "refused: " + type(e).__name__
        print(json.dumps({"refused": all(v.startswith("refused") for v in outcome.values()), "attempts": outcome}))
    elif mode == "import":
        # `import MODULE`: the module's VALUE on every worker, and whether this client itself
        # can import it (it must not: the package is the cluster's own).
        import importlib
        import importlib.util

        module = sys.argv[2]

        def value():
            try:
                return importlib.import_module(module).VALUE
            except ImportError:
                return None

        with client() as c:
            per_worker = c.run(value)
            on_scheduler = c.run_on_scheduler(value)
        print(json.dumps({"workers": sorted(per_worker.values()), "scheduler": on_scheduler,
                          "client_has_it": importlib.util.find_spec(module) is not None}))
    elif mode == "http":
        with urllib.request.urlopen(sys.argv[2], timeout=10) as r:
            print(json.dumps({"status": r.status, "body": r.read(2000).decode("utf-8", "replace")}))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
