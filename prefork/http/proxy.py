"""Who the client is when a proxy stands in between. Sans-I/O.

Two ways a proxy tells us, each honoured only from peers we were told to trust:

- **Forwarded headers** (RFC 7239 ``Forwarded``, ``X-Forwarded-For/-Proto/
  -Host/-Port/-Prefix``, and gunicorn's ``secure_scheme_headers``), from a peer
  in ``forwarded_allow_ips``: :meth:`Forwarding.apply` rewrites the environ.
- **The PROXY protocol**, v1 (text) and v2 (binary), as HAProxy specifies it:
  a header the proxy sends before the first byte of HTTP, from a peer in
  ``proxy_allow_ips``: :func:`parse_proxy_header` reads it.

The rule for a list of hops (``X-Forwarded-For: a, b, c``, or the elements of
``Forwarded``): walk it from the right, skipping the hops that are trusted
proxies themselves; the first one that is not is the client. Everything to its
left was written by the client or its own proxies and proves nothing. When
every hop is trusted, the leftmost is the client. A hop that is not an
address (``unknown``, an obfuscated name, garbage) ends the walk and the
client is left as the socket saw it.

Everything here is linear in its input and bounded by the header limits the
parser already enforced; nothing here touches a socket.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import struct
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from .errors import BadRequest

_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Networks:
    """A set of peers: CIDRs or addresses, ``*`` (anyone) and ``unix`` (a peer
    on a unix socket, whose address is the empty string)."""

    __slots__ = ("any", "unix", "nets", "_cache")

    CACHE_SIZE = 4096

    def __init__(self, items: Iterable[str]):
        self.any = False
        self.unix = False
        self.nets: list[_IPNetwork] = []
        self._cache: dict[str, bool] = {}
        for item in items:
            text = item.strip()
            if text == "*":
                self.any = True
            elif text.lower() == "unix":
                self.unix = True
            else:
                try:
                    self.nets.append(ipaddress.ip_network(text, strict=False))
                except ValueError:
                    raise ValueError(f"{item!r} is not an address, a CIDR, '*' or 'unix'") from None

    def trusts(self, addr: str) -> bool:
        """Is ``addr`` (an IP address as a string, or "" for a unix peer) one of ours?"""
        hit = self._cache.get(addr)
        if hit is not None:
            return hit
        if not addr:
            result = self.unix
        elif self.any:
            result = True
        else:
            result = False
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError:
                ip = None
            if ip is not None:
                if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                    ip = ip.ipv4_mapped    # ::ffff:10.0.0.1 on a dual-stack socket
                result = any(ip in net for net in self.nets)
        if len(self._cache) >= self.CACHE_SIZE:
            self._cache.clear()
        self._cache[addr] = result
        return result


def parse_node(text: str) -> tuple[str, str] | None:
    """A hop: ``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``, ``[2001:db8::1]:80``
    (what X-Forwarded-For and Forwarded's ``for=`` carry) as (address, port);
    the port is "" when not given or not a number. None when it is no address."""
    text = text.strip()
    port = ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if rest[0] != ":":
                return None
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host = text
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        port = ""       # absent, or obfuscated ("_abc", RFC 7239 §6.3)
    return str(ip), port


_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def parse_forwarded(value: str) -> list[dict[str, str]] | None:
    """RFC 7239's ``Forwarded`` as a list of elements, each a dict of its
    pairs (names lower-cased, quoted strings unquoted), left to right. None
    when the value does not follow the grammar: then none of it is used."""
    elements: list[dict[str, str]] = []
    current: dict[str, str] = {}
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in " \t":
            i += 1
        if i < n and value[i] not in ",;":
            start = i
            while i < n and value[i] in _TCHAR:
                i += 1
            name = value[start:i].lower()
            if not name or i >= n or value[i] != "=":
                return None
            i += 1
            if i < n and value[i] == '"':
                i += 1
                chars: list[str] = []
                while True:
                    if i >= n:
                        return None         # unterminated quoted string
                    c = value[i]
                    if c == '"':
                        i += 1
                        break
                    if c == "\\":
                        i += 1
                        if i >= n:
                            return None
                        c = value[i]
                    chars.append(c)
                    i += 1
                text = "".join(chars)
            else:
                start = i
                while i < n and value[i] in _TCHAR:
                    i += 1
                text = value[start:i]
                if not text:
                    return None
            if name in current:
                return None                 # RFC 7239 §4: a name at most once per element
            current[name] = text
            while i < n and value[i] in " \t":
                i += 1
        if i >= n:
            if current:
                elements.append(current)
            return elements
        if value[i] == ";":
            i += 1
        elif value[i] == ",":
            if current:
                elements.append(current)
            current = {}
            i += 1
        else:
            return None


# host = reg-name / IPv4 / "[" IPv6 "]", then an optional port (RFC 3986 §3.2.2);
# one character class each, so fullmatch stays linear.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::([0-9]{1,5}))?")

# The forwarded headers that can be named in ``forwarded_headers``, and their environ keys.
FORWARDED_HEADERS = {
    "forwarded": "HTTP_FORWARDED",
    "x-forwarded-for": "HTTP_X_FORWARDED_FOR",
    "x-forwarded-proto": "HTTP_X_FORWARDED_PROTO",
    "x-forwarded-host": "HTTP_X_FORWARDED_HOST",
    "x-forwarded-port": "HTTP_X_FORWARDED_PORT",
    "x-forwarded-prefix": "HTTP_X_FORWARDED_PREFIX",
}


def header_key(name: str) -> str:
    return "HTTP_" + name.strip().upper().replace("-", "_")


def _last(value: str) -> str:
    """The rightmost item of a comma-separated value: the one the nearest proxy wrote."""
    return value.rpartition(",")[2].strip()


class Forwarding:
    """What a trusted proxy's headers may change in the environ.

    ``headers`` lists which forwarded headers to honour (``forwarded_headers``),
    ``secure_scheme_headers`` maps a header to the value that means https.
    When ``Forwarded`` is honoured and sent, it decides the client, the
    scheme and the host, and X-Forwarded-For/-Proto/-Host are not read.
    Scheme headers that disagree (``X-Forwarded-Proto: http`` with
    ``X-Forwarded-Ssl: on``) are a 400: the proxy is misconfigured, and
    guessing would be a security decision taken in the dark."""

    def __init__(self, trusted: Networks, headers: Iterable[str],
                 secure_scheme_headers: dict[str, str] | None = None):
        self.trusted = trusted
        names = set()
        for name in headers:
            lname = name.strip().lower()
            if lname not in FORWARDED_HEADERS:
                raise ValueError(f"{name!r} is not one of {', '.join(FORWARDED_HEADERS)}")
            names.add(lname)
        self.forwarded = "forwarded" in names
        self.xff = "x-forwarded-for" in names
        self.proto = "x-forwarded-proto" in names
        self.host = "x-forwarded-host" in names
        self.port = "x-forwarded-port" in names
        self.prefix = "x-forwarded-prefix" in names
        self.secure = [(header_key(k), v.strip().lower())
                       for k, v in (secure_scheme_headers or {}).items()]
        self.keys = tuple(FORWARDED_HEADERS[n] for n in sorted(names)) + tuple(
            k for k, _ in self.secure)

    def walk(self, nodes: list[str]) -> tuple[str, str] | None:
        """The client among ``nodes`` (left to right): the rightmost hop that
        is not a trusted proxy, or None when a hop is no address."""
        last = None
        for raw in reversed(nodes):
            node = parse_node(raw)
            if node is None:
                return None
            last = node
            if not self.trusted.trusts(node[0]):
                return node
        return last

    def apply(self, env: MutableMapping[str, Any]) -> None:
        """Rewrite ``env`` (the request came from a trusted peer) from the
        forwarded headers it carries. Raises BadRequest for conflicting
        scheme headers."""
        for key in self.keys:
            if key in env:
                break
        else:
            return          # the common case: nothing forwarded, nothing to do
        client = scheme = host = None
        used_forwarded = False
        if self.forwarded and "HTTP_FORWARDED" in env:
            elements = parse_forwarded(env["HTTP_FORWARDED"])
            if elements:
                used_forwarded = True
                chosen = elements[-1]
                fors = [e.get("for", "") for e in elements]
                if all(fors):
                    client = self.walk(fors)
                    if client is not None:
                        # The element that names the client was written by the
                        # outermost trusted proxy: its proto and host are the ones
                        # the client used.
                        for e in reversed(elements):
                            node = parse_node(e["for"])
                            if node == client:
                                chosen = e
                                break
                scheme = chosen.get("proto")
                host = chosen.get("host")
        if not used_forwarded:
            if self.xff and "HTTP_X_FORWARDED_FOR" in env:
                client = self.walk(env["HTTP_X_FORWARDED_FOR"].split(","))
            if self.proto and "HTTP_X_FORWARDED_PROTO" in env:
                scheme = _last(env["HTTP_X_FORWARDED_PROTO"])
            if self.host and "HTTP_X_FORWARDED_HOST" in env:
                host = _last(env["HTTP_X_FORWARDED_HOST"])
        schemes = set()
        if scheme is not None:
            scheme = scheme.lower()
            if scheme in ("http", "https"):
                schemes.add(scheme)
        for key, secure_value in self.secure:
            if key in env:
                schemes.add("https" if _last(env[key]).lower() == secure_value else "http")
        if len(schemes) > 1:
            raise BadRequest("the trusted proxy sent scheme headers that disagree "
                             "(forwarded_headers, secure_scheme_headers)")
        if client is not None:
            env["REMOTE_ADDR"], env["REMOTE_PORT"] = client[0], client[1] or "0"
        new_port = None
        if schemes:
            env["wsgi.url_scheme"] = scheme = schemes.pop()
            new_port = "443" if scheme == "https" else "80"
        if host is not None:
            m = _HOST.fullmatch(host)
            if m is not None and (m[2] is None or int(m[2]) <= 65535):
                env["HTTP_HOST"] = host
                env["SERVER_NAME"] = m[1]
                new_port = m[2] or ("443" if env["wsgi.url_scheme"] == "https" else "80")
        if self.port and "HTTP_X_FORWARDED_PORT" in env:
            port = _last(env["HTTP_X_FORWARDED_PORT"])
            if port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535:
                new_port = port
        if new_port is not None:
            env["SERVER_PORT"] = new_port
        if self.prefix and "HTTP_X_FORWARDED_PREFIX" in env:
            self._apply_prefix(env, _last(env["HTTP_X_FORWARDED_PREFIX"]))

    @staticmethod
    def _apply_prefix(env: MutableMapping[str, Any], prefix: str) -> None:
        """The path the proxy mounts the app under goes in front of SCRIPT_NAME;
        if the proxy did not strip it from the path, it comes off PATH_INFO."""
        if not prefix.startswith("/") or "?" in prefix or "#" in prefix:
            return
        if "%" in prefix:
            prefix = unquote_to_bytes(prefix.encode("latin-1")).decode("latin-1")
        prefix = prefix.rstrip("/")
        if not prefix:
            return
        path = env.get("PATH_INFO", "")
        if path == prefix or path.startswith(prefix + "/"):
            env["PATH_INFO"] = path[len(prefix):]
        env["SCRIPT_NAME"] = prefix + env.get("SCRIPT_NAME", "")


_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,200}")


class RequestIds:
    """``request_id_header``: every request gets an id, in the environ as
    ``prefork.request_id`` and as the header itself (``HTTP_X_REQUEST_ID``),
    so the app, its logs and the access log (``{X-Request-ID}i``, and the
    json format) all carry the same one. The id a trusted peer sends is kept
    when it is 1 to 200 visible ASCII characters; any other (from a client,
    or malformed) is replaced by one made here: a random prefix drawn when
    the worker starts, then a counter. Unique for the server's lifetime (48
    random bits per worker), not a UUID, so that it costs next to nothing on
    every request (docs/benchmarks.md)."""

    __slots__ = ("key", "prefix", "counter")

    def __init__(self, header: str):
        self.key = header_key(header)
        self.prefix = ""
        self.counter = itertools.count(1)

    def reseed(self) -> None:
        """A new prefix: called in each worker, so no two share a sequence."""
        self.prefix = os.urandom(6).hex() + "-"
        self.counter = itertools.count(1)

    def assign(self, env: MutableMapping[str, Any], trusted: bool) -> str:
        rid = env.get(self.key) if trusted else None
        if rid is None or _REQUEST_ID.fullmatch(rid) is None:
            if not self.prefix:
                self.reseed()
            # next() on a count is one C call: atomic under the GIL, so two
            # pool threads never get the same number.
            rid = f"{self.prefix}{next(self.counter):x}"
            env[self.key] = rid
        env["prefork.request_id"] = rid
        return rid


# -- the PROXY protocol (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt) --

V1_PREFIX = b"PROXY "
V1_MAX = 107                    # the spec's bound for a whole v1 line, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# A v2 header may announce up to 64 KiB of addresses and TLVs; proxies send a
# few hundred bytes. Ours stops at this, so a connection never holds more.
V2_MAX_LENGTH = 4096

PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20
PP2_CLIENT_SSL = 0x01
PP2_SUBTYPE_SSL_VERSION = 0x21


class ProxyError(ValueError):
    """A PROXY header that is malformed, unsupported or not allowed: the
    connection is closed without an answer (the proxy speaks no HTTP yet)."""


@dataclass(slots=True)
class ProxyHeader:
    version: int                            # 1 or 2
    source: tuple[str, str] | None          # the client (address, port); None: keep the socket's
    dest: tuple[str, str] | None = None     # where the client connected to
    tlvs: dict[int, bytes] = field(default_factory=dict)
    ssl: bool = False                       # v2: the client spoke TLS to the proxy
    ssl_version: str = ""

    def environ(self, base: dict[str, Any], proxy_peer: tuple[str, str]) -> dict[str, Any]:
        """``base`` (a listener's environ) for this connection: the proxy's own
        address kept as PROXY_ADDR/PROXY_PORT, SERVER_PORT the one the client
        connected to, https when the proxy terminated TLS."""
        env = dict(base)
        env["PROXY_PROTOCOL"] = f"v{self.version}"
        env["PROXY_ADDR"], env["PROXY_PORT"] = proxy_peer
        if self.dest is not None:
            env["SERVER_PORT"] = self.dest[1]   # the port the client connected to
        if self.ssl:
            env["wsgi.url_scheme"] = "https"
        authority = self.tlvs.get(PP2_TYPE_AUTHORITY)
        if authority:
            env["PROXY_AUTHORITY"] = authority.decode("latin-1")
        unique_id = self.tlvs.get(PP2_TYPE_UNIQUE_ID)
        if unique_id:
            env["PROXY_UNIQUE_ID"] = unique_id.decode("latin-1")
        return env


def parse_proxy_header(buf: bytes, versions: str = "auto") -> tuple[ProxyHeader, int] | None:
    """The PROXY header at the start of ``buf`` and the bytes it took, or None
    while more bytes are needed. ``versions`` is "v1", "v2" or "auto".
    Raises ProxyError as soon as the bytes cannot become a valid header."""
    if not buf:
        return None
    if buf[0] == 0x50 and versions != "v2":           # "P"
        return _parse_v1(buf)
    if buf[0] == 0x0D and versions != "v1":           # "\r"
        return _parse_v2(buf)
    raise ProxyError("the connection did not start with a PROXY protocol header")


def _parse_v1(buf: bytes) -> tuple[ProxyHeader, int] | None:
    if not buf[:len(V1_PREFIX)] == V1_PREFIX[:len(buf)]:
        raise ProxyError("not a PROXY v1 header")
    end = buf.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(buf) >= V1_MAX:
            raise ProxyError(f"PROXY v1 header longer than {V1_MAX} bytes")
        if b"\n" in buf:
            raise ProxyError("PROXY v1 header not ended by CRLF")
        return None
    try:
        line = buf[:end].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyError("PROXY v1 header is not ASCII") from None
    parts = line.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return ProxyHeader(1, None), end + 2
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyError(f"malformed PROXY v1 header {line[:V1_MAX]!r}")
    _, proto, src, dst, sport, dport = parts
    version = 4 if proto == "TCP4" else 6
    try:
        s = ipaddress.ip_address(src)
        d = ipaddress.ip_address(dst)
    except ValueError:
        raise ProxyError(f"bad address in PROXY v1 header {line!r}") from None
    if s.version != version or d.version != version:
        raise ProxyError(f"address family does not match {proto} in PROXY v1 header")
    for port in (sport, dport):
        if not (port.isascii() and port.isdigit() and int(port) <= 65535
                and (port == "0" or port[0] != "0")):
            raise ProxyError(f"bad port {port!r} in PROXY v1 header")
    return ProxyHeader(1, (str(s), sport), (str(d), dport)), end + 2


# v2 address families: the address type and its size in bytes.
_INET: dict[int, tuple[type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address], int]] = {
    1: (ipaddress.IPv4Address, 4), 2: (ipaddress.IPv6Address, 16)}


def _parse_v2(buf: bytes) -> tuple[ProxyHeader, int] | None:
    sig = len(V2_SIGNATURE)
    if buf[:sig] != V2_SIGNATURE[:len(buf)]:
        raise ProxyError("not a PROXY v2 header")
    if len(buf) < 16:
        return None
    ver_cmd, fam, length = buf[12], buf[13], struct.unpack_from("!H", buf, 14)[0]
    if ver_cmd >> 4 != 2:
        raise ProxyError(f"PROXY v2 header with version {ver_cmd >> 4}")
    command = ver_cmd & 0x0F
    if command > 1:
        raise ProxyError(f"PROXY v2 header with unknown command {command}")
    if length > V2_MAX_LENGTH:
        raise ProxyError(f"PROXY v2 header of {length} bytes (the most taken: {V2_MAX_LENGTH})")
    total = 16 + length
    if len(buf) < total:
        return None
    body = memoryview(buf)[16:total]
    family, transport = fam >> 4, fam & 0x0F
    if command == 0:
        # LOCAL: the proxy's own connection (a health check): its address stands.
        header = ProxyHeader(2, None)
        offset = length                 # the address block, if any, is ignored
    elif family == 0:
        header = ProxyHeader(2, None)   # UNSPEC: nothing to tell
        offset = length
    else:
        if transport != 1:
            raise ProxyError("PROXY v2 header for a datagram or unknown transport")
        if family in _INET:
            address, size = _INET[family]
            block = 2 * size + 4
            if length < block:
                raise ProxyError(f"PROXY v2 header too short for {address.__name__[:4]} addresses")
            sport, dport = struct.unpack_from("!HH", body, 2 * size)
            header = ProxyHeader(2, (str(address(bytes(body[:size]))), str(sport)),
                                 (str(address(bytes(body[size:2 * size]))), str(dport)))
            offset = block
        elif family == 3:
            if length < 216:
                raise ProxyError("PROXY v2 header too short for unix addresses")
            header = ProxyHeader(2, ("", ""))
            offset = 216
        else:
            raise ProxyError(f"PROXY v2 header with unknown address family {family}")
    header.tlvs = _parse_tlvs(body[offset:]) if command == 1 else {}
    ssl = header.tlvs.get(PP2_TYPE_SSL)
    if ssl is not None:
        if len(ssl) < 5:
            raise ProxyError("PROXY v2 SSL TLV shorter than 5 bytes")
        header.ssl = bool(ssl[0] & PP2_CLIENT_SSL)
        version = _parse_tlvs(memoryview(ssl)[5:]).get(PP2_SUBTYPE_SSL_VERSION)
        if version:
            header.ssl_version = version.decode("latin-1")
    return header, total


def _parse_tlvs(data: memoryview) -> dict[int, bytes]:
    """Type-length-value records; the first of a type is kept. Raises
    ProxyError when one runs past the end."""
    tlvs: dict[int, bytes] = {}
    i, n = 0, len(data)
    while i < n:
        if n - i < 3:
            raise ProxyError("truncated TLV in PROXY v2 header")
        kind = data[i]
        size = (data[i + 1] << 8) | data[i + 2]
        i += 3
        if size > n - i:
            raise ProxyError("TLV longer than the PROXY v2 header")
        tlvs.setdefault(kind, bytes(data[i:i + size]))
        i += size
    return tlvs
