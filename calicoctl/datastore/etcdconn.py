"""Connecting to etcd: endpoints from the environment, TLS, failover.

Environment (docs/decisions.md, "Identity and connection"):
- ``ETCD_ENDPOINTS``: comma-separated URLs of cluster members; or
- ``ETCD_AUTHORITY``: ``host:port`` (default ``127.0.0.1:2379``), with
  ``ETCD_SCHEME`` (``http`` or ``https``);
- ``ETCD_CA_CERT_FILE``, ``ETCD_CERT_FILE``, ``ETCD_KEY_FILE`` for TLS.

python-etcd's own reconnect logic asks the cluster for its member list when
the client is built (a network round trip before the first command, and a
failure if the first member is down). Instead we keep one plain client per
configured endpoint and move to the next one when a request cannot connect.
"""
import ipaddress
import logging
import re
from dataclasses import dataclass
from typing import Optional, Tuple
from urllib.parse import urlsplit

from calicoctl import validate
from calicoctl.errors import DatastoreUnavailable, ValidationError

DEFAULT_AUTHORITY = "127.0.0.1:2379"
# One part of a host name: letters, digits and inner hyphens (and underscores).
HOST_LABEL_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?\Z")
# Short enough that "etcd is down" is reported within seconds; watches pass
# their own, longer timeout per call.
DEFAULT_TIMEOUT = 2.0


@dataclass(frozen=True)
class EtcdEndpoint:
    scheme: str
    host: str
    port: int

    @property
    def url(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s:%d" % (self.scheme, host, self.port)


@dataclass(frozen=True)
class EtcdSettings:
    endpoints: Tuple[EtcdEndpoint, ...]
    ca_cert: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = None


def parse_settings(env):
    """Pure: the environment mapping -> EtcdSettings, or ValidationError."""
    scheme = env.get("ETCD_SCHEME", "http").strip().lower() or "http"
    if scheme not in ("http", "https"):
        raise ValidationError("Invalid ETCD_SCHEME %r: expected http or https." % scheme)
    endpoints_text = env.get("ETCD_ENDPOINTS", "").strip()
    if endpoints_text:
        endpoints = tuple(_parse_url(item.strip()) for item in endpoints_text.split(",") if item.strip())
        if not endpoints:
            raise ValidationError("Invalid ETCD_ENDPOINTS %r: no URL given." % endpoints_text)
    else:
        authority = env.get("ETCD_AUTHORITY", "").strip() or DEFAULT_AUTHORITY
        endpoints = (_parse_authority(authority, scheme),)
    settings = EtcdSettings(endpoints=endpoints,
                            ca_cert=env.get("ETCD_CA_CERT_FILE") or None,
                            cert=env.get("ETCD_CERT_FILE") or None,
                            key=env.get("ETCD_KEY_FILE") or None)
    if bool(settings.cert) != bool(settings.key):
        raise ValidationError("ETCD_CERT_FILE and ETCD_KEY_FILE must be given together.")
    return settings


def _parse_authority(text, scheme):
    def error(reason):
        return ValidationError("Invalid ETCD_AUTHORITY %r: %s." % (text, reason))
    if text.startswith("["):          # [v6addr]:port
        host, _, rest = text[1:].partition("]")
        if not rest.startswith(":"):
            raise error("expected host:port, e.g. 127.0.0.1:2379")
        port_text = rest[1:]
        bracketed = True
    else:
        if text.count(":") != 1:
            raise error("expected host:port, e.g. 127.0.0.1:2379")
        host, port_text = text.split(":")
        bracketed = False
    if not validate.DIGITS_RE.match(port_text) or not 1 <= int(port_text) <= 65535:
        raise error("the port must be a number from 1 to 65535")
    return EtcdEndpoint(scheme, _check_host(host, bracketed, error), int(port_text))


def _parse_url(text):
    def error(reason):
        return ValidationError("Invalid etcd endpoint %r in ETCD_ENDPOINTS: %s." % (text, reason))
    shape = "expected a URL like http://10.0.0.1:2379"
    try:
        parts = urlsplit(text)
    except ValueError:                # e.g. brackets around something that is not IPv6
        raise error(shape) from None
    try:
        port = parts.port
    except ValueError:
        raise error("the port must be a number from 1 to 65535") from None
    # Anything but scheme://host[:port] (a path, "?", "#", user@) would be
    # silently dropped by the client, which would then dial something else.
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or "#" in text or "?" in text or "@" in parts.netloc:
        raise error(shape)
    if port is not None and not 1 <= port <= 65535:
        raise error("the port must be a number from 1 to 65535")
    bracketed = parts.netloc.startswith("[")
    return EtcdEndpoint(parts.scheme, _check_host(parts.hostname, bracketed, error), port or 2379)


def _check_host(host, bracketed, error):
    """``host`` if it is an IP address or a name DNS allows, else raise
    ``error(reason)``; an IPv6 address only in brackets."""
    if bracketed:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise error("[%s] is not an IPv6 address" % host) from None
        return host
    if not host:
        raise error("the host is missing")
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise error("%s is not an IPv4 address" % host) from None
        return host
    if len(host.rstrip(".")) > 253:
        raise error("the host name is longer than the 253 characters DNS allows")
    for label in labels:
        if not label or len(label) > 63:
            raise error("each dot-separated part of a host name must have 1 to 63 characters")
        # Underscores are not DNS but /etc/hosts and container names use them.
        if not HOST_LABEL_RE.match(label):
            raise error("the host name %r has characters a host name cannot have" % host)
    return host


def describe(settings):
    return ", ".join(endpoint.url for endpoint in settings.endpoints)


class EtcdConnection:
    """python-etcd clients for each endpoint, used in turn on connection failure.

    Offers ``read``, ``write``, ``delete`` and ``test_and_set`` with python-etcd's
    signatures; a request that cannot reach any endpoint raises
    DatastoreUnavailable naming every endpoint tried.
    """

    def __init__(self, settings, timeout=DEFAULT_TIMEOUT):
        self.settings = settings
        self.timeout = timeout
        self._clients = [None] * len(settings.endpoints)
        self._current = 0
        _quiet_library_logging()

    def _client(self, index):
        if self._clients[index] is None:
            self._clients[index] = _build_client(self.settings, self.settings.endpoints[index], self.timeout)
        return self._clients[index]

    def _call(self, method, *args, **kwargs):
        import etcd
        failures = []
        count = len(self._clients)
        for attempt in range(count):
            index = (self._current + attempt) % count
            try:
                result = getattr(self._client(index), method)(*args, **kwargs)
            except etcd.EtcdConnectionFailed as exc:
                # A watch that simply timed out is not a dead endpoint.
                if isinstance(exc, etcd.EtcdWatchTimedOut):
                    raise
                failures.append(self.settings.endpoints[index].url + _failure_hint(exc))
                continue
            self._current = index
            return result
        raise DatastoreUnavailable("Cannot reach etcd at %s: is etcd running, and is "
                                   "ETCD_AUTHORITY/ETCD_ENDPOINTS right?" % ", ".join(failures))

    def read(self, key, **kwargs):
        return self._call("read", key, **kwargs)

    def write(self, key, value, **kwargs):
        return self._call("write", key, value, **kwargs)

    def delete(self, key, **kwargs):
        return self._call("delete", key, **kwargs)


def _failure_hint(exc):
    """A short reason for a failed request when it is not simply 'nobody listens'."""
    text = repr(getattr(exc, "cause", None)) + str(exc)
    if "SSL" in text or "certificate" in text.lower():
        return " (TLS handshake failed: check ETCD_CA_CERT_FILE, ETCD_CERT_FILE and ETCD_KEY_FILE)"
    if "FileNotFoundError" in text or "No such file" in text:
        return " (a TLS certificate or key file does not exist)"
    return ""


def connect(env, timeout=DEFAULT_TIMEOUT):
    """Build (without contacting etcd) a connection from an environment mapping."""
    return EtcdConnection(parse_settings(env), timeout=timeout)


def _build_client(settings, endpoint, timeout):
    import etcd
    import urllib3
    kwargs = dict(host=endpoint.host, port=endpoint.port, protocol=endpoint.scheme,
                  read_timeout=timeout, allow_reconnect=False)
    if settings.cert:
        kwargs["cert"] = (settings.cert, settings.key)
    if settings.ca_cert:
        kwargs["ca_cert"] = settings.ca_cert
    client = etcd.Client(**kwargs)
    # NOTE: urllib3 retries a failed connect three times by default, which
    # multiplies the wait for an unreachable member; we fail over instead.
    # other=0 as well: with total=None, an unlimited "other" budget retries a
    # TLS handshake failure (e.g. a rejected client certificate) forever.
    client.http.connection_pool_kw["retries"] = urllib3.Retry(
        total=None, connect=0, read=0, redirect=5, status=0, other=0)
    return client


def _quiet_library_logging():
    # python-etcd logs every failed request at ERROR; without a handler
    # Python would print those to stderr next to our own one-line message.
    logger = logging.getLogger("etcd")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    logger.propagate = False
