"""Fixtures shared by the HTTP tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate it signed for 127.0.0.1 (skipped without openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a certificate with")
    where = tmp_path_factory.mktemp("tls")
    ca, key, cert = where / "ca.crt", where / "server.key", where / "server.crt"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=where)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", "ca.key", "-out", str(ca), "-subj", "/CN=imageq test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
            "-out", "server.csr", "-subj", "/CN=127.0.0.1")  # fmt: skip
    (where / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca), "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", "san.cnf", "-out", str(cert))  # fmt: skip
    return ca, key, cert
