"""Remote source URLs in the one form that is both checked against the allow-list and requested.

HTTP clients rewrite URLs before they send them: they drop tabs and line
breaks, resolve ``.`` and ``..`` segments (also percent-encoded ones), turn
backslashes into slashes and send userinfo as credentials to whatever host
follows it. A URL compared in one spelling and requested in another can
therefore reach bytes outside an allowed prefix. :func:`request_url` parses a
URL once, refuses every such trick with ``PermissionError``, and returns the
normalised URL; the allow-list compares that URL and the readers request it.

- ``http(s)``: scheme and host lower-cased, the default port dropped, each
  path segment percent-decoded (as UTF-8) and encoded again the way obstore
  (Rust's ``url``) encodes it, so that the URL returned is the one sent.
- object stores (``s3``, ``gs``, ``az`` ...) and other fsspec protocols:
  keys are written plainly (not percent-decoded), so the URL is returned as
  it is, with its scheme lower-cased, once it passes the same segment rules.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import quote, unquote

__all__ = ["request_url"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENCODED_TRICK = re.compile(r"%(2e|2f|5c|00|0[9ad])", re.IGNORECASE)
"""Percent-encoded ``.``, ``/``, ``\\``, NUL, tab and line breaks: in a path, written only to
disguise it (a query, such as a signed URL's, may hold them)."""
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_HOST = re.compile(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?|\[[0-9a-f:.]+\]")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_SEGMENT_SAFE = "!$&'()*+,;=:@[]^|~"
"""Characters obstore (Rust ``url``) leaves unencoded in a path segment, besides letters,
digits and ``-._~``."""
_QUERY_SAFE = "!$%&()*+,-./:;=?@[]^_{|}~"
"""... and in a query, where obstore also encodes ``'`` (fsspec then sends it as it is)."""


def _refused(url: str, why: str) -> PermissionError:
    return PermissionError(f"source URL {url!r} is refused: {why}; write the URL plainly")


@functools.lru_cache(maxsize=4096)
def request_url(url: str) -> str:
    """``url`` as it is compared and requested; ``PermissionError`` naming the trick if it
    disguises where it leads.

    >>> request_url("HTTP://Example.org:80/data/a%20b.nc")
    'http://example.org/data/a%20b.nc'
    >>> request_url("https://example.org/data/%2e%2e/secret")
    Traceback (most recent call last):
    ...
    PermissionError: source URL 'https://example.org/data/%2e%2e/secret' is refused: ...
    """
    if _CONTROL.search(url):
        raise _refused(url, "it contains a control character (tab, line break, NUL ...)")
    if "\\" in url:
        raise _refused(url, "it contains a backslash, which HTTP clients read as '/'")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or not _SCHEME.fullmatch(scheme):
        raise _refused(url, "it is not an absolute URL (scheme://...)")
    authority, slash, path = rest.partition("/")
    if scheme in _DEFAULT_PORTS:
        return _http_url(url, scheme, authority, path)
    _check_authority(url, scheme, authority)
    _check_segments(url, path.split("/") if slash else [])
    return f"{scheme}://{rest}"


def _http_url(url: str, scheme: str, authority: str, rest: str) -> str:
    """An ``http(s)`` URL with its host, port and path normalised as they will be sent."""
    rest, _, _fragment = rest.partition("#")  # a fragment is never sent
    path, question, query = rest.partition("?")
    host, port = _host_and_port(url, authority)
    segments = path.split("/") if path else []
    _check_segments(url, segments)
    try:
        decoded = [unquote(s, errors="strict") for s in segments]
    except UnicodeDecodeError:
        raise _refused(url, "a percent-encoded byte sequence in its path is not UTF-8") from None
    _check_segments(url, decoded)
    path = "/".join(quote(s, safe=_SEGMENT_SAFE) for s in decoded)
    query = quote(query, safe=_QUERY_SAFE)
    port = "" if port in ("", _DEFAULT_PORTS[scheme]) else f":{port}"
    return f"{scheme}://{host}{port}/{path}{question}{query}"


def _host_and_port(url: str, authority: str) -> tuple[str, str]:
    """The lower-cased host and the port of an HTTP URL's ``authority``; no userinfo."""
    if "@" in authority:
        raise _refused(url, "it carries userinfo ('user@host'), which would be sent as credentials")
    host, colon, port = authority.rpartition(":") if not authority.endswith("]") else ("", "", "")
    if not colon:
        host, port = authority, ""
    host = host.lower()
    if not _HOST.fullmatch(host):
        raise _refused(url, f"its host {host!r} is not a plain host name or IP address")
    if port and not (port.isascii() and port.isdigit() and int(port) < 65536):
        raise _refused(url, f"its port {port!r} is not a number below 65536")
    return host, port.lstrip("0") or ("0" if port else "")


def _check_authority(url: str, scheme: str, authority: str) -> None:
    """A bucket, container or host: userinfo only in Azure's ``container@account`` form."""
    if authority.count("@") > (1 if scheme in ("az", "abfs", "abfss") else 0):
        raise _refused(url, "it carries userinfo ('user@host')")
    if any(c in authority for c in "?#%"):
        raise _refused(url, "its bucket or host contains '?', '#' or '%'")


def _check_segments(url: str, segments: list[str]) -> None:
    """Refuse ``.`` and ``..`` segments (also as ``..;param``) and empty ones (``//``; a
    trailing ``/`` is allowed: prefixes end with one)."""
    for i, segment in enumerate(segments):
        name = segment.split(";", 1)[0]
        if name in (".", ".."):
            raise _refused(url, f"its path has a {segment!r} segment, which leaves its folder")
        if not segment and i < len(segments) - 1:
            raise _refused(url, "its path has an empty segment ('//')")
        if "/" in segment or "\\" in segment or _CONTROL.search(segment):
            raise _refused(url, f"its path segment {segment!r} hides a separator or control")
        if found := _ENCODED_TRICK.search(segment):
            raise _refused(url, f"its path segment {segment!r} encodes {found.group(0)!r}")
