"""TLS and HTTP/2 with uvicorn's flags: a real handshake from httpx, `websockets` and raw sockets,
against certificates made by pki.py (a CA, a server certificate for 127.0.0.1 signed by it, a
client certificate). Checks the scheme the app sees, chains, encrypted keys, client
certificates, protocol versions, and that bad files stop startup with a message naming them
while bad clients cost only their own connection."""

from __future__ import annotations

import asyncio
import socket
import ssl

import httpx
import pytest
import websockets
from conftest import raw_connection, recv_until_closed
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec
from h2client import h2_connection, h2_get, h2_pump
from pki import client, tls_flags, x509_certificate, x509_name


@pytest.mark.parametrize("key", ["key", "rsa_key"])
def test_https_request_and_scheme(server, pki, key):
    srv = server.start("apps.scope_app:app", *tls_flags(pki, key))
    assert f"Ferricorn running on https://127.0.0.1:{srv.port}" in srv.logs()
    with client(pki) as http:
        scope = http.get(f"https://127.0.0.1:{srv.port}/a?b=1").json()
    assert scope["scheme"] == "https"
    assert scope["path"] == "/a"


def test_tls_scope_extension(server, pki):
    """asgiref specs/tls.rst: on TLS connections only, with the server's certificate, the
    client's chain and subject (RFC 4514), the TLS version and the IANA cipher suite."""
    srv = server.start("apps.scope_app:app", *tls_flags(pki, "key", "--ssl-cert-reqs", "1",
                                                        "--ssl-ca-certs", str(pki["ca"])))
    url = f"https://127.0.0.1:{srv.port}/"
    with client(pki, cert=(str(pki["client"]), str(pki["client_key"]))) as http:
        tls = http.get(url).json()["extensions"]["tls"]
    leaf_pem = pki["chain"].read_text().split("-----END CERTIFICATE-----")[0]
    assert tls["server_cert"].strip() == (leaf_pem + "-----END CERTIFICATE-----").strip()
    chain = [c.strip() for c in tls["client_cert_chain"]]
    # Leaf first; OpenSSL on the client side appends the CA it built the chain with.
    assert chain[0] == pki["client"].read_text().strip()
    assert chain[1:] in ([], [pki["ca"].read_text().strip()])
    assert tls["client_cert_name"] == "CN=client one"
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] == 0x0304
    assert tls["cipher_suite"] in (0x1301, 0x1302, 0x1303)
    with client(pki) as http:  # no client certificate: optional with --ssl-cert-reqs 1
        tls = http.get(url).json()["extensions"]["tls"]
    assert (tls["client_cert_chain"], tls["client_cert_name"]) == ([], None)


def test_no_tls_extension_on_plain_connections(server):
    srv = server.start("apps.scope_app:app")
    with httpx.Client(trust_env=False) as http:
        scope = http.get(f"http://127.0.0.1:{srv.port}/").json()
    assert "tls" not in scope.get("extensions", {})
    assert scope["scheme"] == "http"


def test_the_whole_chain_is_sent_leaf_first(server, pki):
    # The client trusts the root only: the handshake verifies only if the server sends the
    # intermediate after the leaf, as the chain file has them.
    srv = server.start("apps.basic:app", "--ssl-certfile", str(pki["intermediate_chain"]),
                       "--ssl-keyfile", str(pki["intermediate_key"]))
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        leaf = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
        assert leaf.subject == x509_name("localhost issued")
        assert leaf.issuer == x509_name("test intermediate")
        assert tls.version() == "TLSv1.3"
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = recv_until_closed(tls)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"Hello, world!")


def test_a_chain_without_its_intermediate_does_not_verify(server, pki, tmp_path):
    # The other side of the test above: the leaf alone fails the same client, so the test
    # above passes because the intermediate was sent.
    leaf_only = tmp_path / "leaf.pem"
    pem = pki["intermediate_chain"].read_bytes()
    end = b"-----END CERTIFICATE-----\n"
    leaf_only.write_bytes(pem[: pem.index(end) + len(end)])
    srv = server.start("apps.basic:app", "--ssl-certfile", str(leaf_only),
                       "--ssl-keyfile", str(pki["intermediate_key"]))
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        context.wrap_socket(raw, server_hostname="localhost")


def test_encrypted_key_with_its_password(server, pki):
    srv = server.start("apps.basic:app", *tls_flags(pki, "encrypted_key"),
                       "--ssl-keyfile-password", "s3cret")
    with client(pki) as http:
        assert http.get(f"https://127.0.0.1:{srv.port}/").text == "Hello, world!"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--ssl-keyfile-password", "wrong"), "wrong password"),
        ((), "the key is encrypted; give its password with --ssl-keyfile-password"),
    ],
    ids=["wrong-password", "no-password"],
)
def test_encrypted_key_problems_stop_startup(server, pki, flags, message):
    done = server.run("apps.basic:app", *tls_flags(pki, "encrypted_key"), *flags)
    assert done.returncode == 1, done.output
    assert f"--ssl-keyfile {pki['encrypted_key']}: " in done.output
    assert message in done.output


@pytest.mark.parametrize(
    ("certfile", "keyfile", "message"),
    [
        ("not_pem", "key", "--ssl-certfile {not_pem}: no certificate in the file"),
        ("chain", "not_pem", "--ssl-keyfile {not_pem}: no private key in the file"),
        ("chain", "client_key", "does the key belong to the certificate?"),
        ("missing", "key", "--ssl-certfile {missing}: No such file or directory"),
    ],
    ids=["no-certificate", "no-key", "key-mismatch", "missing-file"],
)
def test_unloadable_files_stop_startup_naming_them(server, pki, tmp_path, certfile, keyfile,
                                                   message):
    paths = {**pki, "missing": tmp_path / "missing.pem"}
    done = server.run("apps.basic:app", "--ssl-certfile", str(paths[certfile]),
                      "--ssl-keyfile", str(paths[keyfile]))
    assert done.returncode == 1, done.output
    assert message.format(**paths) in done.output


def test_an_unsupported_key_type_stops_startup_naming_it(server, pki, tmp_path):
    dsa_key = tmp_path / "dsa.pem"
    dsa_key.write_bytes(dsa.generate_private_key(key_size=1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    done = server.run("apps.basic:app", "--ssl-certfile", str(pki["chain"]),
                      "--ssl-keyfile", str(dsa_key))
    assert done.returncode == 1, done.output
    assert f'--ssl-keyfile {dsa_key}: unsupported key type "DSA PRIVATE KEY"' in done.output


def test_tls12_in_the_tls_scope_extension(server, pki):
    srv = server.start("apps.scope_app:app", *tls_flags(pki, "key", "--ssl-version", "5"))
    with client(pki) as http:
        tls = http.get(f"https://127.0.0.1:{srv.port}/").json()["extensions"]["tls"]
    assert tls["tls_version"] == 0x0303
    # OpenSSL's first choice with an RSA certificate: TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384.
    assert tls["cipher_suite"] == 0xC030


def test_a_client_certificate_from_another_ca_is_refused(server, pki, tmp_path):
    other_ca_key = ec.generate_private_key(ec.SECP256R1())
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger = x509_certificate("client stranger", stranger_key, other_ca_key, "other CA")
    (tmp_path / "stranger.pem").write_bytes(stranger.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "stranger_key.pem").write_bytes(stranger_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    srv = server.start("apps.basic:app", *tls_flags(pki, "key", "--ssl-cert-reqs", "2",
                                                    "--ssl-ca-certs", str(pki["ca"])))
    url = f"https://127.0.0.1:{srv.port}/"
    stranger_cert = (str(tmp_path / "stranger.pem"), str(tmp_path / "stranger_key.pem"))
    with client(pki, cert=stranger_cert) as http, pytest.raises(httpx.HTTPError):
        http.get(url)
    with client(pki, cert=(str(pki["client"]), str(pki["client_key"]))) as http:
        assert http.get(url).text == "Hello, world!"


def test_plain_http_on_the_tls_port_costs_only_that_connection(server, pki):
    srv = server.start("apps.basic:app", *tls_flags(pki))
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        reply = recv_until_closed(sock)
    assert not reply.startswith(b"HTTP/1.1 200")  # no plain-text answer on a TLS port
    stalled = raw_connection(srv.port)  # a handshake that never starts
    stalled.sendall(b"\x16\x03\x01")
    with client(pki) as http:
        assert http.get(f"https://127.0.0.1:{srv.port}/").text == "Hello, world!"
    stalled.close()


def test_tls13_only(server, pki):
    srv = server.start("apps.basic:app", *tls_flags(pki, "key", "--ssl-protocol-min", "tls1.3"))
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw, \
            pytest.raises(ssl.SSLError):
        context.wrap_socket(raw, server_hostname="localhost")
    with client(pki) as http:
        assert http.get(f"https://127.0.0.1:{srv.port}/").status_code == 200


@pytest.mark.parametrize("cipher", ["ECDHE-RSA-AES128-GCM-SHA256",
                                    "ECDHE-RSA-CHACHA20-POLY1305"])
def test_tls12_with_a_chosen_cipher(server, pki, cipher):
    # Neither suite is the one the client (OpenSSL's default order) or rustls would pick
    # first (ECDHE-RSA-AES256-GCM-SHA384), so only --ssl-ciphers makes it the one used.
    srv = server.start("apps.basic:app", *tls_flags(pki, "key", "--ssl-version", "5",
                                                    "--ssl-ciphers", cipher))
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.version() == "TLSv1.2"
        assert tls.cipher()[0] == cipher
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
        # A client that offers only the default's first choice finds nothing in common.
        only_aes256 = ssl.create_default_context(cafile=str(pki["ca"]))
        only_aes256.maximum_version = ssl.TLSVersion.TLSv1_2
        only_aes256.set_ciphers("ECDHE-RSA-AES256-GCM-SHA384")
        with pytest.raises(ssl.SSLError):
            only_aes256.wrap_socket(raw, server_hostname="localhost")


def test_tls10_is_refused_with_a_clear_error(server):
    done = server.run("apps.basic:app", "--ssl-version", "3")
    assert done.returncode == 2
    assert "TLS 1.0/1.1" in done.output


@pytest.mark.parametrize("given", [True, False], ids=["with-cert", "without-cert"])
def test_client_certificate_required(server, pki, given):
    srv = server.start("apps.basic:app", *tls_flags(pki, "key", "--ssl-cert-reqs", "2",
                                                    "--ssl-ca-certs", str(pki["ca"])))
    cert = (str(pki["client"]), str(pki["client_key"])) if given else None
    url = f"https://127.0.0.1:{srv.port}/"
    if given:
        with client(pki, cert=cert) as http:
            assert http.get(url).text == "Hello, world!"
    else:
        with client(pki) as http, pytest.raises(httpx.HTTPError):
            http.get(url)
        with client(pki, cert=(str(pki["client"]), str(pki["client_key"]))) as http:
            assert http.get(url).status_code == 200  # the server is still serving


def test_websocket_over_tls(server, pki):
    srv = server.start("apps.ws_app:app", *tls_flags(pki))
    context = ssl.create_default_context(cafile=str(pki["ca"]))

    async def talk() -> tuple[str, str]:
        async with websockets.connect(f"wss://localhost:{srv.port}/echo", ssl=context) as ws:
            await ws.send("over tls")
            echoed = await ws.recv()
        async with websockets.connect(f"wss://localhost:{srv.port}/scope", ssl=context) as ws:
            return echoed, await ws.recv()

    echoed, scope = asyncio.run(talk())
    assert echoed == "over tls"
    assert '"scheme": "wss"' in scope


# --- HTTP/2 -----------------------------------------------------------------------------------


def test_http2_by_alpn_on_tls(server, pki):
    srv = server.start("apps.scope_app:app", *tls_flags(pki))
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    with httpx.Client(http2=True, verify=context, trust_env=False, timeout=10) as http:
        response = http.get(f"https://127.0.0.1:{srv.port}/h2?x=1")
    assert response.http_version == "HTTP/2"
    scope = response.json()
    assert (scope["http_version"], scope["scheme"], scope["path"]) == ("2", "https", "/h2")
    assert scope["extensions"]["tls"]["tls_version"] == 0x0304


def test_http2_by_prior_knowledge_and_http11_on_the_same_port(server):
    srv = server.start("apps.basic:app")
    url = f"http://127.0.0.1:{srv.port}"
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=10) as http:
        response = http.post(f"{url}/echo", content=b"x" * 100_000)
        assert response.http_version == "HTTP/2"
        assert response.content == b"x" * 100_000
        streamed = http.get(f"{url}/stream?delay=0.05")
        assert (streamed.http_version, streamed.text) == ("HTTP/2", "Hello, world!")
    with httpx.Client(trust_env=False, timeout=10) as http:
        response = http.get(f"{url}/")
    assert (response.http_version, response.text) == ("HTTP/1.1", "Hello, world!")


def test_http2_by_prior_knowledge_and_http11_on_a_unix_socket(server, tmp_path):
    path = str(tmp_path / "h2c.sock")
    server.start("apps.basic:app", "--uds", path)
    transport = httpx.HTTPTransport(uds=path, http1=False, http2=True)
    with httpx.Client(transport=transport, timeout=10) as http:
        response = http.post("http://localhost/echo", content=b"y" * 70_000)
        assert (response.http_version, response.content) == ("HTTP/2", b"y" * 70_000)
    with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=10) as http:
        response = http.get("http://localhost/")
    assert (response.http_version, response.text) == ("HTTP/1.1", "Hello, world!")


def test_http2_streams_run_concurrently_on_one_connection(server):
    srv = server.start("apps.basic:app")

    async def many() -> tuple[float, set[str]]:
        async with httpx.AsyncClient(http1=False, http2=True, trust_env=False,
                                     timeout=20) as http:
            started = asyncio.get_running_loop().time()
            responses = await asyncio.gather(*[
                http.get(f"http://127.0.0.1:{srv.port}/stream?delay=0.5") for _ in range(8)])
            elapsed = asyncio.get_running_loop().time() - started
        return elapsed, {r.text for r in responses}

    elapsed, texts = asyncio.run(many())
    assert texts == {"Hello, world!"}
    # Eight 1-second streams one after the other would take 8 s; together about 1 s.
    assert elapsed < 4.0


def test_http_h11_keeps_tls_clients_on_http11(server, pki):
    srv = server.start("apps.basic:app", *tls_flags(pki, "key", "--http", "h11"))
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    with httpx.Client(http2=True, verify=context, trust_env=False, timeout=10) as http:
        response = http.get(f"https://127.0.0.1:{srv.port}/")
    assert (response.http_version, response.text) == ("HTTP/1.1", "Hello, world!")


def test_http_h2_refuses_http11(server):
    srv = server.start("apps.basic:app", "--http", "h2")
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert recv_until_closed(sock) == b""
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=10) as http:
        response = http.get(f"http://127.0.0.1:{srv.port}/")
    assert (response.http_version, response.text) == ("HTTP/2", "Hello, world!")


def test_http2_authority_is_the_host_header(server):
    srv = server.start("apps.scope_app:app")
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=10) as http:
        scope = http.get(f"http://127.0.0.1:{srv.port}/p").json()
    headers = [(n["bytes"], v["bytes"]) for n, v in
               ((h["tuple"][0], h["tuple"][1]) if isinstance(h, dict) else (h[0], h[1])
                for h in scope["headers"])]
    assert ("host", f"127.0.0.1:{srv.port}") in headers
    assert not any(name.startswith(":") for name, _ in headers)  # no pseudo-header


def test_http2_head_carries_no_body(server):
    srv = server.start("apps.basic:app")
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=10) as http:
        response = http.head(f"http://127.0.0.1:{srv.port}/")
    assert (response.status_code, response.content) == (200, b"")
    assert response.headers["content-length"] == "13"


def test_h2c_upgrade_request_is_served_as_http11(server):
    """`curl --http2 http://...` asks with `Upgrade: h2c`: answered in HTTP/1.1, no hang."""
    srv = server.start("apps.basic:app", "--no-date-header", "--no-server-header")
    with raw_connection(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                     b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"Hello, world!")


def test_http2_stream_reset_reaches_its_app_and_spares_the_others(server):
    """A client's RST_STREAM ends that stream's app at once (http.disconnect, or OSError from
    send), while another stream on the same connection goes on."""
    import h2.events

    srv = server.start("apps.basic:app")
    sock, conn = h2_connection(srv.port)
    endless = h2_get(conn, "/endless")
    other = h2_get(conn, "/stream?delay=0.3")
    sock.sendall(conn.data_to_send())

    def ticks(events):
        return any(isinstance(e, h2.events.DataReceived) and e.stream_id == endless
                   for e in events)

    h2_pump(sock, conn, ticks)
    conn.reset_stream(endless)
    sock.sendall(conn.data_to_send())
    srv.wait_for_log("ENDLESS-STOPPED", timeout=5)

    def other_done(events):
        return any(isinstance(e, h2.events.StreamEnded) and e.stream_id == other
                   for e in events)

    events = h2_pump(sock, conn, other_done)
    body = b"".join(e.data for e in events
                    if isinstance(e, h2.events.DataReceived) and e.stream_id == other)
    assert body.endswith(b"world!")
    sock.close()


def test_http2_rapid_reset_leaves_the_server_serving(server):
    """CVE-2023-44487: streams opened and reset at once, by the thousand; the server stays
    up and answers a normal client afterwards."""
    srv = server.start("apps.basic:app")
    sock, conn = h2_connection(srv.port)
    try:
        for _ in range(2000):
            stream = h2_get(conn, "/")
            conn.reset_stream(stream)
            sock.sendall(conn.data_to_send())
    except (ConnectionError, OSError):
        pass  # the server may close this abusive connection (GOAWAY): that is allowed
    sock.close()
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=10) as http:
        assert http.get(f"http://127.0.0.1:{srv.port}/").text == "Hello, world!"
    assert srv.alive()


def test_http_h2_on_tls_refuses_clients_without_h2(server, pki):
    srv = server.start("apps.basic:app", *tls_flags(pki, "key", "--http", "h2"))
    context = ssl.create_default_context(cafile=str(pki["ca"]))  # offers no ALPN at all
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        try:
            reply = recv_until_closed(tls)
        except ssl.SSLError:  # closed without a close_notify: the same refusal
            reply = b""
        assert reply == b""
    with httpx.Client(http1=False, http2=True, verify=context, trust_env=False,
                      timeout=10) as http:
        assert http.get(f"https://127.0.0.1:{srv.port}/").http_version == "HTTP/2"
