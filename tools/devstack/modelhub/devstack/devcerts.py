"""A local certificate authority and key pairs for TLS on one machine (`make up --tls`, the
tests), made with the `openssl` command-line tool:

    python -m modelhub.devstack.devcerts var/tls

* `ca.crt` — a self-signed CA (ECDSA P-256) that signs the others; clients trust it
  (`grpcurl -cacert`, `curl --cacert`, `tritonclient ... ssl=True`).
* `server.crt/.key` — the front door's certificate (Envoy), for `localhost` and `127.0.0.1`.
* `service.crt/.key` — the services' certificate for mutual TLS among them and from Envoy
  (MODELHUB_TLS_*): server and client use, for `localhost`, `127.0.0.1` and `modelhub` (the
  name to verify where hosts differ: MODELHUB_TLS_SERVER_NAME=modelhub).
* `client.crt/.key` — a client certificate, for a front door that requires one.

Files already there are kept (a second run reuses them). For local use only: production
certificates come from the operator's own CA.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DAYS = 825
SERVICE_NAME = "modelhub"


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class LocalCerts:
    ca: Path
    server: Pair
    service: Pair
    client: Pair


def _openssl() -> str:
    found = shutil.which("openssl") or (
        "/usr/bin/openssl" if Path("/usr/bin/openssl").exists() else ""
    )
    if not found:
        raise RuntimeError("the openssl command is needed to make local certificates")
    return found


def _run(*args: str) -> None:
    result = subprocess.run([_openssl(), *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _key(path: Path) -> None:
    _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    os.chmod(path, 0o600)


def _issue(
    directory: Path, name: str, subject: str, ca: Path, ca_key: Path, extensions: list[str]
) -> Pair:
    pair = Pair(directory / f"{name}.crt", directory / f"{name}.key")
    if pair.cert.exists() and pair.key.exists():
        return pair
    _key(pair.key)
    csr = directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    ext.write_text("\n".join(extensions) + "\n", encoding="utf-8")
    try:
        _run("req", "-new", "-key", str(pair.key), "-subj", subject, "-out", str(csr))
        _run(
            "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", str(DAYS), "-sha256", "-extfile", str(ext),
            "-out", str(pair.cert),
        )  # fmt: skip
    finally:
        csr.unlink(missing_ok=True)
        ext.unlink(missing_ok=True)
    return pair


def ensure(directory: Path) -> LocalCerts:
    """The CA and the three pairs under `directory`, made where missing."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    if not (ca.exists() and ca_key.exists()):
        _key(ca_key)
        _run(
            "req", "-x509", "-new", "-key", str(ca_key), "-subj", "/CN=ModelHub local CA",
            "-days", str(DAYS), "-sha256", "-out", str(ca),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
    leaf = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"]
    local_names = "DNS:localhost,IP:127.0.0.1"
    return LocalCerts(
        ca=ca,
        server=_issue(
            directory, "server", "/CN=localhost", ca, ca_key,
            [*leaf, "extendedKeyUsage=serverAuth", f"subjectAltName={local_names}"],
        ),
        service=_issue(
            directory, "service", f"/CN={SERVICE_NAME}", ca, ca_key,
            [*leaf, "extendedKeyUsage=serverAuth,clientAuth",
             f"subjectAltName={local_names},DNS:{SERVICE_NAME}"],
        ),
        client=_issue(
            directory, "client", "/CN=modelhub-client", ca, ca_key,
            [*leaf, "extendedKeyUsage=clientAuth"],
        ),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelhub.devstack.devcerts", description=__doc__
    )
    parser.add_argument("directory", help="where the files go (kept when already there)")
    args = parser.parse_args(argv)
    certs = ensure(Path(args.directory))
    for label, path in [
        ("CA", certs.ca),
        ("front door certificate", certs.server.cert),
        ("front door key", certs.server.key),
        ("service certificate", certs.service.cert),
        ("service key", certs.service.key),
        ("client certificate", certs.client.cert),
        ("client key", certs.client.key),
    ]:
        print(f"{label:<24} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
