"""Behind a proxy (issue 11): ``--forwarded-allow-ips`` and the PROXY protocol.

What a user checks: the real server, real sockets, the WSGI environ as the application
sees it (``environ_app`` echoes it as JSON). Forwarded headers are sent as a proxy
would send them; PROXY protocol headers (v1 text, v2 binary) are written by hand on
raw sockets, whole, split over delayed writes, and followed by pipelined requests.

On loopback every peer is 127.0.0.1 unless the client binds another 127.0.0.0/8
source address (Linux routes the whole network to ``lo``): 127.0.0.2 is "someone
else" for the default trust list ``127.0.0.1,::1,unix``.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import signal
import socket
import struct
import subprocess
import time

import pytest
from conftest import (
    NGINX,
    read_response,
    read_responses,
    recv_until_closed,
    request_bytes,
)

APP = "environ_app:app"
OTHER_LOOPBACK = "127.0.0.2"  # a local peer that is not in the default trust list
V2_SIGNATURE = b"\r\n\r\n\0\r\nQUIT\n"
BAD_ENTRY = "is not an IP address, a network (10.0.0.0/8), 'unix' or '*'"


# --- helpers ---------------------------------------------------------------------------


def connect(server, source: str | None = None, timeout: float = 10.0) -> socket.socket:
    """A raw connection to ``server``, from the ``source`` address when given."""
    return socket.create_connection(
        (server.host, server.port), timeout, source_address=(source, 0) if source else None
    )


def connect_unix(path, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(timeout)
    sock.connect(str(path))
    return sock


def environ_on(
    sock: socket.socket, data: bytes = b"", headers=(), target: str = "/", timeout: float = 10.0
) -> dict:
    """Send ``data`` (a PROXY header, say) and a GET on ``sock``; the echoed environ."""
    sock.sendall(data + request_bytes("GET", target, list(headers)))
    status, _, body = read_response(sock, timeout)
    assert status == b"HTTP/1.1 200 OK", (status, body[:300])
    return json.loads(body)


def environ_of(server, headers=(), source: str | None = None, prefix: bytes = b"") -> dict:
    """The environ of one GET sent on a new connection (after ``prefix``)."""
    with connect(server, source) as sock:
        return environ_on(sock, prefix, headers)


def peer_of(sock: socket.socket) -> tuple[str, str]:
    """The (REMOTE_ADDR, REMOTE_PORT) the server should see for ``sock`` without a proxy."""
    host, port = sock.getsockname()[:2]
    return host, str(port)


def v1(src: str, dst: str, sport: int, dport: int, family: str = "TCP4") -> bytes:
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"") -> bytes:
    """A version 2 PROXY (0x21) header for a TCP4 or TCP6 connection, TLVs appended."""
    source, dest = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    family = 0x11 if source.version == 4 else 0x21
    block = source.packed + dest.packed + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(block)) + block


V2_LOCAL = V2_SIGNATURE + bytes([0x20, 0x00, 0x00, 0x00])


def closed_without_answer(sock: socket.socket, data: bytes, timeout: float = 5.0) -> None:
    """Send ``data``; the server must close the connection, having sent nothing."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        return  # closed already: nothing can have been answered
    received, closed = recv_until_closed(sock, timeout)
    assert received == b"", f"the server answered: {received[:300]!r}"
    assert closed, f"the connection was still open after {timeout} s"


def answers(server, timeout: float = 5.0) -> dict:
    """A good PROXY connection is served (within ``timeout``); its environ."""
    with connect(server, timeout=timeout) as sock:
        env = environ_on(sock, v1("198.51.100.77", "127.0.0.1", 1234, 80), timeout=timeout)
    assert env["REMOTE_ADDR"] == "198.51.100.77"
    return env


@pytest.fixture(scope="module")
def default_server(start_module_server):
    """Default trust (127.0.0.1, ::1, unix), under a master with one worker."""
    return start_module_server(APP, "--workers", "1")


@pytest.fixture(scope="module")
def proxy_server(start_module_server):
    """``--proxy-protocol`` with the default --proxy-allow-from, one worker (master)."""
    return start_module_server(APP, "--workers", "1", "--proxy-protocol")


# --- X-Forwarded-For / X-Forwarded-Proto / Forwarded ------------------------------------


def test_without_forwarded_headers_the_socket_peer_is_the_client(default_server):
    with connect(default_server) as sock:
        env = environ_on(sock)
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == peer_of(sock)
    assert env["wsgi.url_scheme"] == "http"


def test_trusted_peer_sets_client_and_scheme(default_server):
    env = environ_of(
        default_server, [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]
    )
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert "REMOTE_PORT" not in env, "X-Forwarded-For names no port"
    assert env["wsgi.url_scheme"] == "https"
    # The headers themselves still reach the application.
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"


def test_ipv6_client_in_x_forwarded_for(default_server):
    env = environ_of(default_server, [("X-Forwarded-For", "2001:db8::5")])
    assert env["REMOTE_ADDR"] == "2001:db8::5"
    assert "REMOTE_PORT" not in env


def test_rightmost_untrusted_hop_wins_over_a_forged_one(default_server):
    # The client forged 6.6.6.6; our own proxy (127.0.0.1, trusted) appended the last hop.
    env = environ_of(default_server, [("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 127.0.0.1")])
    assert env["REMOTE_ADDR"] == "203.0.113.7"


def test_repeated_x_forwarded_for_fields_are_one_list(default_server):
    headers = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.8, ::1")]
    assert environ_of(default_server, headers)["REMOTE_ADDR"] == "203.0.113.8"


def test_when_every_hop_is_trusted_the_leftmost_is_the_client(start_server):
    server = start_server(APP, "--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8")
    env = environ_of(server, [("X-Forwarded-For", "10.1.1.1, 10.2.2.2, 127.0.0.1")])
    assert env["REMOTE_ADDR"] == "10.1.1.1"


@pytest.mark.parametrize("entry", ["nonsense", "unknown", "_hidden", "203.0.113.9:bad"])
def test_a_hop_that_is_not_an_address_changes_nothing(default_server, entry):
    with connect(default_server) as sock:
        headers = [("X-Forwarded-For", f"203.0.113.7, {entry}"), ("X-Forwarded-Proto", "https")]
        env = environ_on(sock, headers=headers)
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == peer_of(sock)
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_X_FORWARDED_FOR"] == f"203.0.113.7, {entry}"


def test_a_non_address_hop_beyond_the_client_does_not_matter(default_server):
    env = environ_of(default_server, [("X-Forwarded-For", "nonsense, 203.0.113.7")])
    assert env["REMOTE_ADDR"] == "203.0.113.7"


def test_scheme_is_the_one_beside_the_chosen_hop(start_server):
    server = start_server(APP, "--forwarded-allow-ips", "127.0.0.1,198.51.100.2")
    aligned = [
        ("X-Forwarded-For", "203.0.113.9, 198.51.100.2"),
        ("X-Forwarded-Proto", "https, http"),
    ]
    env = environ_of(server, aligned)
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("203.0.113.9", "https")
    flipped = [aligned[0], ("X-Forwarded-Proto", "http, https")]
    env = environ_of(server, flipped)
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("203.0.113.9", "http")
    # Lists of different lengths: the last (nearest proxy's) scheme.
    uneven = [aligned[0], ("X-Forwarded-Proto", "https")]
    assert environ_of(server, uneven)["wsgi.url_scheme"] == "https"
    uneven = [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "https, http")]
    assert environ_of(server, uneven)["wsgi.url_scheme"] == "http"


def test_x_forwarded_proto_alone_sets_the_scheme(default_server):
    with connect(default_server) as sock:
        env = environ_on(sock, headers=[("X-Forwarded-Proto", "https")])
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == peer_of(sock)
    assert env["wsgi.url_scheme"] == "https"


@pytest.mark.parametrize("proto", ["gopher", "ws", "https://", ""])
def test_only_http_and_https_are_taken_as_scheme(default_server, proto):
    env = environ_of(
        default_server, [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", proto)]
    )
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "http"


def test_scheme_is_case_insensitive(default_server):
    env = environ_of(default_server, [("X-Forwarded-Proto", "HTTPS")])
    assert env["wsgi.url_scheme"] == "https"


def test_rfc7239_forwarded_with_ipv6_and_port(default_server):
    env = environ_of(default_server, [("Forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https')])
    assert env["REMOTE_ADDR"] == "2001:db8:cafe::17"
    assert env["REMOTE_PORT"] == "4711"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_FORWARDED"] == 'for="[2001:db8:cafe::17]:4711";proto=https'


def test_rfc7239_forwarded_ipv4_without_port(default_server):
    env = environ_of(default_server, [("Forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43")])
    assert env["REMOTE_ADDR"] == "192.0.2.60"
    assert "REMOTE_PORT" not in env
    assert env["wsgi.url_scheme"] == "http"


def test_rfc7239_forwarded_walks_hops_like_x_forwarded_for(default_server):
    header = 'for=6.6.6.6;proto=http, for=192.0.2.61;proto=https, for="[::1]"'
    env = environ_of(default_server, [("Forwarded", header)])
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("192.0.2.61", "https")


def test_forwarded_beats_x_forwarded_for(default_server):
    headers = [
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "http"),
        ("Forwarded", "for=192.0.2.60;proto=https"),
    ]
    env = environ_of(default_server, headers)
    assert env["REMOTE_ADDR"] == "192.0.2.60"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"


def test_untrusted_peer_changes_nothing(start_server):
    server = start_server(APP, "--forwarded-allow-ips", "10.0.0.1")
    headers = [
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-Proto", "https"),
        ("Forwarded", "for=192.0.2.60;proto=https"),
    ]
    with connect(server) as sock:
        env = environ_on(sock, headers=headers)
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == peer_of(sock)
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_X_FORWARDED_FOR"] == "6.6.6.6"
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"
    assert env["HTTP_FORWARDED"] == "for=192.0.2.60;proto=https"


def test_default_trust_is_loopback_only(default_server):
    """127.0.0.2 is local but not 127.0.0.1: not trusted by default."""
    with connect(default_server, source=OTHER_LOOPBACK) as sock:
        env = environ_on(sock, headers=[("X-Forwarded-For", "6.6.6.6")])
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == peer_of(sock)
    assert env["REMOTE_ADDR"] == OTHER_LOOPBACK


def test_star_trusts_everyone(start_server):
    server = start_server(APP, "--forwarded-allow-ips", "*")
    headers = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]
    env = environ_of(server, headers, source=OTHER_LOOPBACK)
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("203.0.113.7", "https")
    # Every hop is trusted too, so the leftmost is the client.
    env = environ_of(server, [("X-Forwarded-For", "6.6.6.6, 203.0.113.7")], source=OTHER_LOOPBACK)
    assert env["REMOTE_ADDR"] == "6.6.6.6"


def test_cidr_entry(start_server):
    server = start_server(APP, "--forwarded-allow-ips", "127.0.0.0/30")
    env = environ_of(server, [("X-Forwarded-For", "203.0.113.7")], source=OTHER_LOOPBACK)
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    # 127.0.0.4 is outside 127.0.0.0/30.
    with connect(server, source="127.0.0.4") as sock:
        env = environ_on(sock, headers=[("X-Forwarded-For", "203.0.113.7")])
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == peer_of(sock)
    # A hop inside the network is one of ours: skipped.
    env = environ_of(server, [("X-Forwarded-For", "203.0.113.7, 127.0.0.3")])
    assert env["REMOTE_ADDR"] == "203.0.113.7"


def test_repeated_and_comma_separated_entries_add_up(start_server):
    server = start_server(
        APP, "--forwarded-allow-ips", "10.0.0.1,127.0.0.2", "--forwarded-allow-ips", "127.0.0.1"
    )
    assert environ_of(server, [("X-Forwarded-For", "203.0.113.1")])["REMOTE_ADDR"] == "203.0.113.1"
    env = environ_of(server, [("X-Forwarded-For", "203.0.113.2")], source=OTHER_LOOPBACK)
    assert env["REMOTE_ADDR"] == "203.0.113.2"
    env = environ_of(server, [("X-Forwarded-For", "203.0.113.3")], source="127.0.0.3")
    assert env["REMOTE_ADDR"] == "127.0.0.3"


def test_environment_variable(start_server):
    server = start_server(APP, env={"FERROWSGI_FORWARDED_ALLOW_IPS": "10.0.0.1, 127.0.0.2"})
    env = environ_of(server, [("X-Forwarded-For", "203.0.113.7")])
    assert env["REMOTE_ADDR"] == "127.0.0.1", "127.0.0.1 is no longer trusted"
    env = environ_of(server, [("X-Forwarded-For", "203.0.113.7")], source=OTHER_LOOPBACK)
    assert env["REMOTE_ADDR"] == "203.0.113.7"


def test_config_file_name(start_server, tmp_path):
    config = tmp_path / "proxy_conf.py"
    config.write_text('forwarded_allow_ips = "10.0.0.1,127.0.0.2"\n')
    server = start_server(APP, "-c", str(config))
    env = environ_of(server, [("X-Forwarded-For", "203.0.113.7")])
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    env = environ_of(server, [("X-Forwarded-For", "203.0.113.7")], source=OTHER_LOOPBACK)
    assert env["REMOTE_ADDR"] == "203.0.113.7"


def test_ipv6_peer_is_trusted_by_default(start_server):
    server = start_server(APP, "--workers", "0", "--bind", "[::1]:0", bind=False)
    assert server.host == "::1"
    env = environ_of(server, [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")])
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("203.0.113.7", "https")


def test_unix_socket_clients_are_trusted_by_default(start_server, tmp_path):
    path = tmp_path / "trust.sock"
    start_server(APP, "--bind", f"unix:{path}", bind=False, ready=False).wait_for_log(
        "Listening at: unix:"
    )
    with connect_unix(path) as sock:
        plain = environ_on(sock)
        headers = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]
        env = environ_on(sock, headers=headers)
    assert plain["REMOTE_ADDR"] == "" and "REMOTE_PORT" not in plain
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("203.0.113.7", "https")
    assert "REMOTE_PORT" not in env


def test_unix_socket_clients_untrusted_without_the_unix_entry(start_server, tmp_path):
    path = tmp_path / "untrusted.sock"
    server = start_server(
        APP, "--bind", f"unix:{path}", "--forwarded-allow-ips", "127.0.0.1", bind=False, ready=False
    )
    server.wait_for_log("Listening at: unix:")
    with connect_unix(path) as sock:
        env = environ_on(
            sock, headers=[("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https")]
        )
    assert env["REMOTE_ADDR"] == ""
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_X_FORWARDED_FOR"] == "6.6.6.6"


def test_forwarded_headers_apply_per_request_on_a_keep_alive_connection(default_server):
    with connect(default_server) as sock:
        first = environ_on(sock, headers=[("X-Forwarded-For", "203.0.113.1")])
        second = environ_on(sock)
        third = environ_on(sock, headers=[("X-Forwarded-Proto", "https")])
        me = peer_of(sock)
    assert first["REMOTE_ADDR"] == "203.0.113.1"
    assert (second["REMOTE_ADDR"], second["REMOTE_PORT"]) == me
    assert second["wsgi.url_scheme"] == "http"
    assert (third["REMOTE_ADDR"], third["wsgi.url_scheme"]) == (me[0], "https")


@pytest.mark.parametrize(
    ("args", "env", "shown"),
    [
        (["--forwarded-allow-ips", "nope"], {}, '"nope"'),
        (["--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8,bogus"], {}, '"bogus"'),
        (["--proxy-allow-from", "10.0.0.0/33"], {}, '"10.0.0.0/33"'),
        (["--proxy-allow-from", "300.1.1.1"], {}, '"300.1.1.1"'),
        ([], {"FERROWSGI_FORWARDED_ALLOW_IPS": "127.0.0.1,nope"}, "FERROWSGI_FORWARDED_ALLOW_IPS"),
        ([], {"FERROWSGI_PROXY_ALLOW_FROM": "example.com"}, "FERROWSGI_PROXY_ALLOW_FROM"),
    ],
    ids=["cli", "cli-list", "cli-prefix", "cli-ip", "env", "env-proxy"],
)
def test_bad_entries_exit_2_naming_the_forms(start_server, args, env, shown):
    server = start_server(APP, *args, env=env, ready=False)
    assert server.proc.wait(15) == 2, server.log
    server.stop()
    assert BAD_ENTRY in server.log and shown in server.log, server.log
    assert "Listening at" not in server.log


def test_bad_entry_in_config_file_exits_2(start_server, tmp_path):
    config = tmp_path / "bad_proxy_conf.py"
    config.write_text('proxy_allow_from = ["127.0.0.1", "zzz"]\n')
    server = start_server(APP, "-c", str(config), ready=False)
    assert server.proc.wait(15) == 2, server.log
    server.stop()
    assert BAD_ENTRY in server.log and '"zzz"' in server.log and str(config) in server.log


# --- PROXY protocol: what it names -------------------------------------------------------


def test_v1_tcp4(proxy_server):
    env = environ_of(proxy_server, prefix=v1("192.0.2.1", "198.51.100.1", 56324, 443))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.1", "56324")
    assert env["SERVER_PORT"] == str(proxy_server.port), "the listening port, not the header's"
    assert env["wsgi.url_scheme"] == "http"


def test_v1_tcp6(proxy_server):
    header = v1("2001:db8::1", "2001:db8::2", 4711, 443, family="TCP6")
    env = environ_of(proxy_server, prefix=header)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::1", "4711")


def test_v1_unknown_keeps_the_socket_peer(proxy_server):
    for header in (b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"):
        with connect(proxy_server) as sock:
            env = environ_on(sock, header)
            assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == peer_of(sock), header


def test_v2_tcp4(proxy_server):
    env = environ_of(proxy_server, prefix=v2("192.0.2.1", "198.51.100.1", 56324, 443))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.1", "56324")


def test_v2_tcp6(proxy_server):
    env = environ_of(proxy_server, prefix=v2("2001:db8::17", "2001:db8::1", 65535, 443))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::17", "65535")


def test_v2_with_tlvs(proxy_server):
    # PP2_TYPE_ALPN "h2" and a 64-byte PP2_TYPE_UNIQUE_ID, as HAProxy may append.
    tlvs = b"\x01" + struct.pack("!H", 2) + b"h2" + b"\x05" + struct.pack("!H", 64) + b"u" * 64
    env = environ_of(proxy_server, prefix=v2("203.0.113.50", "127.0.0.1", 1000, 80, tlvs))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.50", "1000")


def test_v2_local_keeps_the_socket_peer(proxy_server):
    with connect(proxy_server) as sock:
        env = environ_on(sock, V2_LOCAL)
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == peer_of(sock)


def test_header_and_request_in_separate_writes(proxy_server):
    with connect(proxy_server) as sock:
        sock.sendall(v1("192.0.2.9", "127.0.0.1", 9, 80))
        time.sleep(0.2)
        env = environ_on(sock)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.9", "9")


@pytest.mark.parametrize(
    ("header", "cuts", "client"),
    [
        (v1("192.0.2.33", "127.0.0.1", 3333, 80), [1, 6, 15, 30], ("192.0.2.33", "3333")),
        (v2("192.0.2.34", "127.0.0.1", 3434, 80), [3, 12, 13, 15, 20], ("192.0.2.34", "3434")),
        (v2("2001:db8::34", "::1", 3535, 80), [12, 16, 40], ("2001:db8::34", "3535")),
    ],
    ids=["v1", "v2-tcp4", "v2-tcp6"],
)
def test_header_split_over_delayed_writes(proxy_server, header, cuts, client):
    pieces = [header[a:b] for a, b in zip([0, *cuts], [*cuts, len(header)])]
    request = request_bytes("GET", "/split")
    with connect(proxy_server) as sock:
        for piece in pieces[:-1]:
            sock.sendall(piece)
            time.sleep(0.15)
        # The header's last bytes and the start of the request in one write.
        sock.sendall(pieces[-1] + request[:10])
        time.sleep(0.15)
        sock.sendall(request[10:])
        status, _, body = read_response(sock)
    assert status == b"HTTP/1.1 200 OK"
    env = json.loads(body)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == client
    assert env["PATH_INFO"] == "/split"


def test_pipelined_keep_alive_requests_all_get_the_headers_address(proxy_server):
    header = v1("203.0.113.200", "127.0.0.1", 40000, 80)
    requests = b"".join(request_bytes("GET", f"/{n}") for n in range(1, 4))
    with connect(proxy_server) as sock:
        sock.sendall(header + requests)
        responses = read_responses(sock, 3)
        later = environ_on(sock, target="/4")  # a later request on the same connection
    envs = [json.loads(body) for status, _, body in responses] + [later]
    assert [status for status, _, _ in responses] == [b"HTTP/1.1 200 OK"] * 3
    assert [e["PATH_INFO"] for e in envs] == ["/1", "/2", "/3", "/4"]
    assert {(e["REMOTE_ADDR"], e["REMOTE_PORT"]) for e in envs} == {("203.0.113.200", "40000")}


def test_each_connection_gets_its_own_header(proxy_server):
    a, b = connect(proxy_server), connect(proxy_server)
    with a, b:
        a.sendall(v1("192.0.2.101", "127.0.0.1", 1, 80))
        b.sendall(v2("192.0.2.102", "127.0.0.1", 2, 80))
        env_b, env_a = environ_on(b), environ_on(a)
        env_a2 = environ_on(a)
    assert env_a["REMOTE_ADDR"] == env_a2["REMOTE_ADDR"] == "192.0.2.101"
    assert env_b["REMOTE_ADDR"] == "192.0.2.102"


def test_proxy_client_is_not_a_trusted_forwarder(proxy_server):
    """The client the PROXY header names sent X-Forwarded-For itself: not believed."""
    header = v1("203.0.113.60", "127.0.0.1", 6000, 80)
    env = environ_of(
        proxy_server,
        [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https")],
        prefix=header,
    )
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.60", "6000")
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_X_FORWARDED_FOR"] == "6.6.6.6"


def test_body_after_the_header_reaches_the_application(start_server):
    server = start_server("input_app:app", "--workers", "0", "--proxy-protocol")
    body = bytes(range(256)) * 20
    with connect(server) as sock:
        request = request_bytes("POST", "/read", body=body)
        sock.sendall(v2("192.0.2.5", "127.0.0.1", 5, 80) + request)
        status, _, answer = read_response(sock)
    assert status == b"HTTP/1.1 200 OK", answer[:300]
    echoed = json.loads(answer)
    assert echoed["total"] == len(body)
    assert echoed["sha256"] == hashlib.sha256(body).hexdigest()


# --- PROXY protocol: who may send it, and what is refused ---------------------------------


def test_peer_not_allowed_is_closed(start_server):
    server = start_server(
        APP, "--workers", "1", "--proxy-protocol", "--proxy-allow-from", "10.0.0.1"
    )
    for prefix in (v1("192.0.2.1", "127.0.0.1", 1, 80), V2_LOCAL, b""):
        with connect(server) as sock:
            closed_without_answer(sock, prefix + request_bytes("GET", "/"))
    assert server.proc.poll() is None, server.log


def test_allow_from_single_address_and_network(start_server):
    server = start_server(
        APP, "--workers", "0", "--proxy-protocol", "--proxy-allow-from", "127.0.0.2,127.0.0.4/31"
    )
    header = v1("192.0.2.7", "127.0.0.1", 7, 80)
    with connect(server) as sock:  # from 127.0.0.1: not in the list
        closed_without_answer(sock, header + request_bytes("GET", "/"))
    for source in (OTHER_LOOPBACK, "127.0.0.5"):
        env = environ_of(server, source=source, prefix=header)
        assert env["REMOTE_ADDR"] == "192.0.2.7", source
    with connect(server, source="127.0.0.6") as sock:
        closed_without_answer(sock, header + request_bytes("GET", "/"))


def test_allow_from_star(start_server):
    server = start_server(APP, "--workers", "0", "--proxy-protocol", "--proxy-allow-from", "*")
    env = environ_of(server, source="127.0.0.9", prefix=v1("192.0.2.8", "127.0.0.1", 8, 80))
    assert env["REMOTE_ADDR"] == "192.0.2.8"


GARBAGE = {
    "no-header": b"",
    "not-an-ip": b"PROXY TCP4 nonsense 127.0.0.1 1 2\r\n",
    "bad-family": b"PROXY TCP5 192.0.2.1 127.0.0.1 1 2\r\n",
    "family-mismatch": b"PROXY TCP6 192.0.2.1 127.0.0.1 1 2\r\n",
    "bad-port": b"PROXY TCP4 192.0.2.1 127.0.0.1 99999 2\r\n",
    "missing-fields": b"PROXY TCP4 192.0.2.1\r\n",
    "lower-case": b"proxy TCP4 192.0.2.1 127.0.0.1 1 2\r\n",
    "v1-too-long": b"PROXY TCP4 " + b"1" * 200 + b"\r\n",
    "v2-bad-version": V2_SIGNATURE + bytes([0x11, 0x11, 0, 12]) + bytes(12),
    "v2-bad-command": V2_SIGNATURE + bytes([0x22, 0x11, 0, 12]) + bytes(12),
    "v2-short-block": V2_SIGNATURE + bytes([0x21, 0x11, 0, 4]) + bytes([192, 0, 2, 1]),
    "v2-short-tcp6": V2_SIGNATURE + bytes([0x21, 0x21, 0, 12]) + bytes(12),
    "tls-hello": bytes.fromhex("160301020001") + bytes(100),
}


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
def test_missing_or_malformed_header_is_closed_and_the_server_goes_on(proxy_server, garbage):
    with connect(proxy_server) as sock:
        closed_without_answer(sock, garbage + request_bytes("GET", "/after-garbage"))
    answers(proxy_server)


def test_peer_closing_before_a_header_does_not_matter(proxy_server):
    with connect(proxy_server):
        pass
    answers(proxy_server)


def test_header_timeout_closes_a_silent_connection(start_server):
    server = start_server(APP, "--workers", "0", "--proxy-protocol", "--header-timeout", "1")
    with connect(server) as sock:
        started = time.monotonic()
        received, closed = recv_until_closed(sock, 6)
        elapsed = time.monotonic() - started
    assert received == b"" and closed, "a connection with no PROXY header was kept open"
    assert 0.8 <= elapsed < 4, f"closed after {elapsed:.2f} s with --header-timeout 1"
    answers(server)


def test_header_timeout_closes_an_unfinished_header(start_server):
    server = start_server(APP, "--workers", "0", "--proxy-protocol", "--header-timeout", "1")
    for partial in (b"PROXY TCP4 192.0.2.1 ", V2_SIGNATURE[:8], V2_SIGNATURE + b"\x21\x11\x00"):
        with connect(server) as sock:
            sock.sendall(partial)
            started = time.monotonic()
            received, closed = recv_until_closed(sock, 6)
            elapsed = time.monotonic() - started
        assert received == b"" and closed, f"{partial!r}: the connection was kept open"
        assert elapsed < 4, f"{partial!r}: closed after {elapsed:.2f} s"
        answers(server)


def test_others_are_served_while_a_header_is_pending(start_server):
    """One connection that has sent nothing yet, and one with half a header, must not
    hold up a third that sends a whole header and a request."""
    server = start_server(APP, "--workers", "0", "--proxy-protocol", "--header-timeout", "30")
    silent, partial = connect(server), connect(server)
    with silent, partial:
        partial.sendall(b"PROXY TCP4 192.0.2.1 ")
        time.sleep(0.2)
        answers(server, timeout=5)
        # The half-sent header still completes.
        env = environ_on(partial, b"127.0.0.1 11 80\r\n")
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.1", "11")


def test_peer_closing_in_the_middle_of_a_header_does_not_stop_the_server(start_server):
    server = start_server(APP, "--workers", "0", "--proxy-protocol", "--header-timeout", "2")
    with connect(server) as sock:
        sock.sendall(b"PROXY TCP4 192.0.2.1 ")
    time.sleep(0.2)
    answers(server, timeout=5)
    # And it still stops on SIGTERM.
    server.proc.send_signal(signal.SIGTERM)
    try:
        code = server.proc.wait(10)
    except subprocess.TimeoutExpired:
        code = None
    assert code == 0, f"did not stop on SIGTERM within 10 s; log:\n{server.log}"


# --- PROXY protocol on a unix socket ------------------------------------------------------


def test_proxy_protocol_on_a_unix_socket(start_server, tmp_path):
    path = tmp_path / "proxy.sock"
    server = start_server(
        APP, "--workers", "1", "--proxy-protocol", "--bind", f"unix:{path}", bind=False, ready=False
    )
    server.wait_for_log("Listening at: unix:")
    with connect_unix(path) as sock:
        env = environ_on(sock, v1("192.0.2.44", "192.0.2.1", 4444, 443))
        again = environ_on(sock)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.44", "4444")
    assert (again["REMOTE_ADDR"], again["REMOTE_PORT"]) == ("192.0.2.44", "4444")
    with connect_unix(path) as sock:
        env = environ_on(sock, v2("2001:db8::44", "2001:db8::1", 4445, 443))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::44", "4445")
    with connect_unix(path) as sock:
        env = environ_on(sock, V2_LOCAL)
    assert env["REMOTE_ADDR"] == "" and "REMOTE_PORT" not in env, "a unix peer has no address"
    with connect_unix(path) as sock:
        closed_without_answer(sock, request_bytes("GET", "/no-header"))
    with connect_unix(path) as sock:
        assert environ_on(sock, b"PROXY UNKNOWN\r\n")["REMOTE_ADDR"] == ""


def test_unix_clients_not_allowed_without_the_unix_entry(start_server, tmp_path):
    path = tmp_path / "noproxy.sock"
    server = start_server(
        APP,
        "--workers",
        "0",
        "--proxy-protocol",
        "--proxy-allow-from",
        "127.0.0.1,::1",
        "--bind",
        f"unix:{path}",
        bind=False,
        ready=False,
    )
    server.wait_for_log("Listening at: unix:")
    with connect_unix(path) as sock:
        closed_without_answer(sock, v1("192.0.2.1", "127.0.0.1", 1, 80) + request_bytes("GET", "/"))
    assert server.proc.poll() is None, server.log


# --- through real nginx ----------------------------------------------------------------


NGINX_BIND = "127.0.0.3"  # nginx connects upstream from here: the one proxy to trust
NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_bind {bind};
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 10s;
        }}
    }}
}}
"""


@pytest.fixture
def nginx_in_front(run_nginx):
    """Factory: ``nginx_in_front(upstream_port)`` → the port nginx listens on."""
    return lambda upstream: run_nginx(NGINX_CONF, upstream=upstream, bind=NGINX_BIND)


def via_nginx(port: int, source: str, headers: dict[str, str]) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", "/via-nginx", headers=headers)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 200, (response.status, body[:300])
    return json.loads(body)


@pytest.mark.skipif(NGINX is None, reason="nginx not found on PATH or in /usr/sbin")
def test_behind_nginx_a_forged_x_forwarded_for_is_not_believed(start_server, nginx_in_front):
    server = start_server(APP, "--workers", "1", "--forwarded-allow-ips", NGINX_BIND)
    port = nginx_in_front(server.port)
    forged = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}
    env = via_nginx(port, "127.0.0.1", forged)
    # nginx appended the client it saw (127.0.0.1) and replaced the scheme with its own.
    assert env["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, 127.0.0.1"
    assert env["HTTP_X_FORWARDED_PROTO"] == "http"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert "REMOTE_PORT" not in env
    assert env["wsgi.url_scheme"] == "http"
    assert env["PATH_INFO"] == "/via-nginx"
    # Without headers of its own, the client is still the one nginx saw.
    env = via_nginx(port, OTHER_LOOPBACK, {})
    assert (env["HTTP_X_FORWARDED_FOR"], env["REMOTE_ADDR"]) == (OTHER_LOOPBACK, OTHER_LOOPBACK)


@pytest.mark.skipif(NGINX is None, reason="nginx not found on PATH or in /usr/sbin")
def test_behind_nginx_an_untrusted_nginx_changes_nothing(start_server, nginx_in_front):
    server = start_server(APP, "--workers", "0", "--forwarded-allow-ips", "127.0.0.1")
    port = nginx_in_front(server.port)
    env = via_nginx(port, OTHER_LOOPBACK, {"X-Forwarded-For": "6.6.6.6"})
    assert env["REMOTE_ADDR"] == NGINX_BIND, "nginx's own address: it is not trusted"
    assert env["HTTP_X_FORWARDED_FOR"] == f"6.6.6.6, {OTHER_LOOPBACK}"
