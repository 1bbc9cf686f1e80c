"""Connecting to etcd: endpoints and TLS from the environment, the API to speak.

Environment (docs/decisions.md, "Identity and connection"):
- ``ETCD_ENDPOINTS``: comma-separated URLs of cluster members; or
- ``ETCD_AUTHORITY``: ``host:port`` (default ``127.0.0.1:2379``), with
  ``ETCD_SCHEME`` (``http`` or ``https``);
- ``ETCD_CA_CERT_FILE``, ``ETCD_CERT_FILE``, ``ETCD_KEY_FILE`` for TLS;
- ``DATASTORE_TYPE``: ``etcdv3`` (default) or ``etcdv2``, the API spoken.

Only the configured endpoints are used (the cluster is not asked for its
member list: that would be a round trip before the first command, and a
failure if the first member is down); ``etcdhttp.EtcdHttp`` owns the
timeout and failover: it moves to the next one when a request cannot
connect, whichever API runs.

This module is the factory of key-value stores: the only one that knows
both APIs (``kv_v2`` and ``kv_v3`` import ``kv``, never this module).
"""
import ipaddress
import re
from dataclasses import dataclass
from typing import Optional, Tuple
from urllib.parse import urlsplit

from calicoctl import validate
from calicoctl.datastore.etcdhttp import DEFAULT_TIMEOUT
from calicoctl.datastore.paths import ROOT
from calicoctl.errors import DatastoreError, ValidationError

DEFAULT_AUTHORITY = "127.0.0.1:2379"
# The etcd APIs we speak (DATASTORE_TYPE); the first is the default.
DATASTORE_TYPES = ("etcdv3", "etcdv2")
# One part of a host name: letters, digits and inner hyphens (and underscores).
HOST_LABEL_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?\Z")
OTHER_API = {"etcdv2": "etcdv3", "etcdv3": "etcdv2"}


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


def datastore_type(env):
    """Pure: ``DATASTORE_TYPE`` from the environment (default etcdv3), or ValidationError."""
    text = env.get("DATASTORE_TYPE", "").strip() or DATASTORE_TYPES[0]
    if text not in DATASTORE_TYPES:
        raise ValidationError("Invalid DATASTORE_TYPE %r: expected %s." % (text, " or ".join(DATASTORE_TYPES)))
    return text


def connect(env, timeout=DEFAULT_TIMEOUT, kind=None):
    """Build (without contacting etcd) the key-value store ``DATASTORE_TYPE``
    names (or ``kind``) from an environment mapping."""
    return open_store(kind or datastore_type(env), parse_settings(env), timeout)


def open_store(kind, settings, timeout=DEFAULT_TIMEOUT):
    """The key-value store speaking API ``kind`` to the endpoints of ``settings``."""
    # Imported here so that a command loads only the store of the API it speaks.
    if kind == "etcdv3":
        from calicoctl.datastore.kv_v3 import EtcdV3
        return EtcdV3(settings, timeout=timeout)
    from calicoctl.datastore.kv_v2 import EtcdV2
    return EtcdV2(settings, timeout=timeout)


def check_api(store):
    """Raise DatastoreError (one line naming the fix) if etcd does not serve
    the API of ``store``, or if that API holds nothing under /calico while
    the other one holds data ``calicoctl datastore migrate`` would copy.

    One request when this API holds /calico; the other API is asked only
    when it does not.
    """
    if store.exists(ROOT):
        return
    other = open_store(OTHER_API[store.datastore_type], store.settings, store.timeout)
    try:
        kept = [entry for entry in other.tree(ROOT).entries if not entry.expires]
    except DatastoreError:
        return          # etcd does not serve the other API either: nothing there
    if kept:
        raise DatastoreError(store.data_elsewhere % store.http.current_url)
