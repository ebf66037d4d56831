"""A loopback HTTPS proxy that lets TensorFlow's own gs:// filesystem reach the GCS emulator.

TensorFlow's built-in GCS filesystem has Google's endpoints compiled in and ignores ``STORAGE_EMULATOR_HOST``,
but its libcurl honours ``https_proxy``, ``CURL_CA_BUNDLE`` and TensorFlow's ``GOOGLE_AUTH_TOKEN_FOR_TESTING``.
So the tests point ``https_proxy`` here: a ``CONNECT`` to www.googleapis.com or storage.googleapis.com is
answered with TLS under a certificate from a throwaway test CA, and each request is passed, with its ``Host``
rewritten, to the emulator's plain-HTTP port. The product code runs unchanged: the same filesystem, the same
endpoints as against real GCS. The emulator speaks HTTP/1.0 (one response per connection), so every tunnel
carries one request and is closed after the response.
"""

from __future__ import annotations

import datetime
import socket
import socketserver
import ssl
import tempfile
import threading
from pathlib import Path

GOOGLE_HOSTS = ("www.googleapis.com", "storage.googleapis.com")


def write_test_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A CA certificate and a server key and certificate for the Google hosts, signed by that CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    valid = {"not_valid_before": now - datetime.timedelta(days=1), "not_valid_after": now + datetime.timedelta(days=7)}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlpipe test CA")])
    ca_cert = (
        x509.CertificateBuilder(issuer_name=ca_name, subject_name=ca_name, public_key=ca_key.public_key(),
                                serial_number=x509.random_serial_number(), **valid)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder(issuer_name=ca_name, public_key=key.public_key(),
                                subject_name=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, GOOGLE_HOSTS[0])]),
                                serial_number=x509.random_serial_number(), **valid)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in GOOGLE_HOSTS]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = folder / "ca.pem", folder / "server.key", folder / "server.pem"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    paths[2].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return paths


def _read_head(sock: socket.socket | ssl.SSLSocket) -> tuple[bytes, bytes]:
    """Bytes up to the blank line ending the headers, and whatever was read past it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


class _Stream:
    """Buffered reads from a socket: exact byte counts and CRLF-ended lines."""

    def __init__(self, sock: ssl.SSLSocket, buffered: bytes) -> None:
        self.sock, self.buffer = sock, buffered

    def _fill(self) -> bool:
        chunk = self.sock.recv(1 << 20)
        self.buffer += chunk
        return bool(chunk)

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size and self._fill():
            pass
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer and self._fill():
            pass
        data, _, self.buffer = self.buffer.partition(b"\r\n")
        return data

    def dechunk(self) -> bytes:
        """A ``Transfer-Encoding: chunked`` body (libcurl's uploads of unknown size), decoded."""
        body = b""
        while size := int(self.line().split(b";")[0] or b"0", 16):
            body += self.read(size)
            self.line()
        while self.line():  # trailers, up to the blank line
            pass
        return body


class _Tunnel(socketserver.BaseRequestHandler):
    server: _FrontServer

    def handle(self) -> None:
        head, _ = _read_head(self.request)
        target = head.split(b" ")[1].decode() if head.startswith(b"CONNECT ") else ""
        if target.rsplit(":", 1)[0] not in GOOGLE_HOSTS:
            self.request.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        with self.server.tls.wrap_socket(self.request, server_side=True) as tls:
            head, body = _read_head(tls)
            if not head:
                return
            dropped = (b"host:", b"expect:", b"transfer-encoding:", b"content-length:")
            lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(dropped)]
            if b"expect: 100-continue" in head.lower():
                tls.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")  # the emulator (HTTP/1.0) never sends it
            stream = _Stream(tls, body)
            chunked = b"transfer-encoding: chunked" in head.lower()
            body = stream.dechunk() if chunked else stream.read(_content_length(head))
            lines.insert(1, f"Host: 127.0.0.1:{self.server.emulator_port}".encode())
            lines.insert(2, f"Content-Length: {len(body)}".encode())
            emulator = f"http://127.0.0.1:{self.server.emulator_port}/".encode()
            with socket.create_connection(("127.0.0.1", self.server.emulator_port), timeout=120) as upstream:
                upstream.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
                response_head, rest = _read_head(upstream)
                # A resumable upload's session URL must lead back through this proxy, not to the emulator.
                response_head = response_head.replace(
                    b"Location: " + emulator, b"Location: https://www.googleapis.com/"
                )
                tls.sendall(response_head + b"\r\n\r\n" + rest)
                while chunk := upstream.recv(1 << 20):
                    tls.sendall(chunk)


class _FrontServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, emulator_port: int, tls: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", port), _Tunnel)
        self.emulator_port = emulator_port
        self.tls = tls


def serve_in_background(port: int, emulator_port: int, ca_file: Path) -> None:
    """Start the proxy on ``port`` in a daemon thread; the test CA's certificate is written to ``ca_file``."""
    folder = Path(tempfile.mkdtemp(prefix="mlpipe-gcs-tls-"))
    ca, key, cert = write_test_ca(folder)
    ca_file.write_bytes(ca.read_bytes())
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = _FrontServer(port, emulator_port, tls)
    threading.Thread(target=server.serve_forever, name="gcs-tls-front", daemon=True).start()
