"""Redis URLs, read once for every client: plain ``redis://``, TLS ``rediss://`` and Redis
Sentinel ``sentinel://``; what redis-py and kombu (Celery's broker) each need from them.

- ``redis://[[user]:password@]host:port/db``
- ``rediss://…`` the same over TLS. The certificate is verified unless the URL says
  otherwise (``?ssl_cert_reqs=none``); ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``
  and ``ssl_check_hostname`` go to both redis-py and kombu. (Left alone, kombu would
  connect without verifying the certificate.)
- ``sentinel://[[user]:password@]host1:26379,host2:26379,host3:26379/db``: the Sentinels to
  ask where the primary is; the password is the Redis servers' (the Sentinels' own is a
  setting, ``RSN_REDIS_SENTINEL_PASSWORD``, like the primary's name,
  ``RSN_REDIS_SENTINEL_MASTER``). kombu's own spelling, ``sentinel://h1:26379;sentinel://
  h2:26379/0``, is read too.

Pure parsing: no I/O, no client library imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from return_notify.errors import ConfigurationError

SCHEMES = ("redis", "rediss", "sentinel")
SENTINEL_PORT = 26379
#: the TLS parameters a rediss:// URL may carry (redis-py's names; kombu reads the same)
TLS_PARAMS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile",
              "ssl_check_hostname")


@dataclass(frozen=True)
class SentinelTarget:
    """Where the Sentinels are, and how to log in to the Redis servers they point at."""

    sentinels: tuple[tuple[str, int], ...]
    db: int
    username: str | None
    password: str | None


def scheme(url: str) -> str:
    """``redis``, ``rediss`` or ``sentinel``; ``ConfigurationError`` for anything else."""
    found = url.split("://", 1)[0].lower() if "://" in url else ""
    if found not in SCHEMES:
        raise ConfigurationError(
            f"RSN_BROKER_URL must start with redis://, rediss:// or sentinel:// (got "
            f"{found + '://' if found else 'no scheme'})")
    return found


def _host_port(spec: str, default_port: int) -> tuple[str, int]:
    if spec.startswith("["):  # [IPv6]:port
        host, _, rest = spec[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = spec.partition(":")
    if not host:
        raise ConfigurationError(f"sentinel URL: a host is missing in {spec!r}")
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise ConfigurationError(f"sentinel URL: bad port in {spec!r}") from None


def parse_sentinel(url: str) -> SentinelTarget:
    """The Sentinels, database and Redis credentials of a ``sentinel://`` URL (either form)."""
    parts = [p for p in url.split(";") if p.strip()]
    sentinels: list[tuple[str, int]] = []
    username = password = None
    db = 0
    for i, part in enumerate(parts):
        if scheme(part.strip()) != "sentinel":
            raise ConfigurationError("sentinel URL: every ';'-separated part must be sentinel://")
        rest = part.strip().split("://", 1)[1]
        netloc, _, path = rest.partition("/")
        path, _, query = path.partition("?")
        if query:
            raise ConfigurationError(
                "sentinel URL: no query parameters (TLS through Sentinel is not supported; "
                "the primary's name is RSN_REDIS_SENTINEL_MASTER)")
        auth, at, hosts = netloc.rpartition("@")
        if at and i == 0:
            user, _, pw = auth.partition(":")
            username, password = unquote(user) or None, unquote(pw) or None
        sentinels += [_host_port(h.strip(), SENTINEL_PORT) for h in hosts.split(",") if h.strip()]
        if path:
            try:
                db = int(path)
            except ValueError:
                raise ConfigurationError(f"sentinel URL: the database must be a number, "
                                         f"not {path!r}") from None
    if not sentinels:
        raise ConfigurationError("sentinel URL: name at least one Sentinel (host:port)")
    return SentinelTarget(tuple(sentinels), db, username, password)


def _auth(username: str | None, password: str | None) -> str:
    if not (username or password):
        return ""
    return f"{quote(username or '', safe='')}:{quote(password or '', safe='')}@"


def kombu_url(url: str) -> str:
    """The broker URL to give Celery: kombu's ``;``-separated form for Sentinel (one URL per
    Sentinel), certificate verification made explicit for ``rediss://``, others unchanged."""
    kind = scheme(url)
    if kind == "sentinel":
        t = parse_sentinel(url)
        auth = _auth(t.username, t.password)
        return ";".join(f"sentinel://{auth}{_netloc(h, p)}/{t.db}" for h, p in t.sentinels)
    if kind == "rediss":
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        query.setdefault("ssl_cert_reqs", "required")
        return parts._replace(query=urlencode(query)).geturl()
    return url


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def mask(url: str | None) -> str:
    """``url`` without its password, for messages and logs."""
    if not url:
        return "(unset)"
    if "@" not in url:
        return url
    out = []
    for part in url.split(";"):
        head, sep, rest = part.partition("://")
        auth, at, tail = rest.rpartition("@")
        out.append(f"{head}{sep}***@{tail}" if at else part)
    return ";".join(out)
