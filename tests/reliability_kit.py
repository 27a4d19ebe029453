"""Helpers for the issue-7 suites (tests/test_fuzz_*, test_security_*, test_faults_*): a real
`vks-controller serve` process with its own config file, the CLI, plain HTTP, and a throw-away
certificate authority made with `cryptography`."""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.procs import free_port

REPO = Path(__file__).resolve().parent.parent
SITES = REPO / "configs" / "sites.yaml"


def cli(*args: str, env: dict, stdin: str | None = None) -> str:
    """Run `vks-controller ARGS`; its stdout (it must succeed)."""
    out = subprocess.run([sys.executable, "-m", "controller.cli", *args], env=env, cwd=REPO, input=stdin,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout.strip()


class ControllerProc:
    """`vks-controller serve` with a config file written from `config` (YAML as JSON); the log
    (stdout and stderr) goes to `log`. `url` is http(s)://127.0.0.1:PORT."""

    def __init__(self, tmp: Path, db_url: str | None = None, *, config: dict | None = None,
                 port: int | None = None, name: str = "controller"):
        self.tmp = tmp
        self.port = port or free_port()
        self.db_url = db_url or f"sqlite:///{tmp / (name + '.sqlite')}"
        self.config_path = tmp / f"{name}.yaml"
        cfg = {"listen": f"127.0.0.1:{self.port}", "db": self.db_url, "sites_file": None, **(config or {})}
        self.config_path.write_text(json.dumps(cfg), encoding="utf-8")   # JSON is YAML
        self.env = dict(os.environ, PYTHONPATH=str(REPO), VKS_CONTROLLER_CONFIG=str(self.config_path))
        self.log = tmp / f"{name}.log"
        self.tls = "tls" in cfg and cfg["tls"]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def cli(self, *args: str, stdin: str | None = None) -> str:
        return cli(*args, env=self.env, stdin=stdin)

    def prepare(self, admin: str = "root") -> str:
        """Migrate, import the sample sites, add an admin; the admin's token."""
        self.cli("migrate")
        self.cli("sites", "import", str(SITES))
        return self.cli("user", "add", admin, "--role", "admin")

    def start(self, wait: bool = True, ssl_ctx: ssl.SSLContext | None = None) -> ControllerProc:
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "serve", "--log-level", "DEBUG"],
                                     env=self.env, cwd=REPO, stdout=self._logf, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready(ssl_ctx=ssl_ctx)
        return self

    def wait_ready(self, timeout: float = 30.0, ssl_ctx: ssl.SSLContext | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"controller exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1, context=ssl_ctx):
                    return
            except urllib.error.HTTPError:
                return                       # it answers (503 while the database is away)
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"controller did not answer within {timeout} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        self._logf.close()

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self._logf.close()
        return self.proc.returncode if self.proc else None

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def http(method: str, url: str, token: str | None = None, body=None, *, raw: bytes | None = None,
         ssl_ctx: ssl.SSLContext | None = None, headers: dict | None = None, timeout: float = 30):
    """(status, parsed JSON or text)."""
    h = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    if token:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ssl_ctx) as resp:
            status, text = resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode("utf-8", "replace")
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


# ---- a throw-away CA ------------------------------------------------------------------------

def make_ca(dir: Path, name: str = "test") -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it, written as PEM:
    {"ca": ..., "cert": ..., "key": ...}."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": dir / f"{name}-ca.pem", "cert": dir / f"{name}-cert.pem", "key": dir / f"{name}-key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    os.chmod(paths["key"], 0o600)
    return paths


def client_ctx(ca: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=str(ca))
    return ctx
