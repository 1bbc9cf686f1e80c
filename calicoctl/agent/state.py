"""Pure indexes over the etcd data the agent enforces.

``PolicyIndex`` takes etcd leaves one at a time (``apply``) and keeps:
every endpoint in the cluster (tags need them all), profiles' rules and
tags, the config that shapes the dataplane, and derived indexes: which
endpoints are local and get chains (by interface name), which profiles
those use, and, for every tag, how many endpoint addresses of each family
carry it. Bad data is logged and treated as absent.

It also records what changed since the dataplane last asked
(``take_changes``), at the granularity the dataplane re-renders: interface
names, profile names and (tag, version, address) triples. So a change costs
time in proportion to what it touches, not to the size of the cluster.

The routes component's smaller view (this host's endpoints by interface) is
``indexes.LocalEndpoints``.
"""
import ipaddress
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from calicoctl import model
from calicoctl.agent.policy.iptables import rules as rules_mod
from calicoctl.agent.control_plane import ControlPlaneIndex
from calicoctl.agent.keys import Kind, as_key
from calicoctl.datastore import paths
from calicoctl.errors import ValidationError

LOG = logging.getLogger(__name__)

CONFIG_NAMES = ("InterfacePrefix", "DefaultEndpointToHostAction")


@dataclass
class Changes:
    """What changed since the last ``take_changes``."""
    ifaces: set = field(default_factory=set)
    """Local interface names whose endpoint (or its absence) changed."""
    profiles: set = field(default_factory=set)
    """Profiles whose rules changed or which became used / unused locally."""
    tag_ips: dict = field(default_factory=lambda: defaultdict(set))
    """(tag, version) -> addresses whose membership may have changed."""
    config: bool = False
    """InterfacePrefix or DefaultEndpointToHostAction changed."""
    control_plane: bool = False
    """The control-plane protection (setting or protected addresses) changed."""

    def __bool__(self):
        return bool(self.ifaces or self.profiles or self.tag_ips or self.config
                    or self.control_plane)


def _normalise_ip(text):
    if "." in text and ":" not in text:
        return text          # IPv4 from the model is already canonical
    return ipaddress.ip_address(text).compressed


def _endpoint_addresses(endpoint, version):
    return tuple(_normalise_ip(address) for address in endpoint.addresses(version))


class _Config:
    """The two config values the dataplane depends on, host over global."""

    def __init__(self, hostname):
        self.hostname = hostname
        self.values = {}
        """etcd key -> value for every config key we track."""
        self._all_keys = frozenset(key for name in CONFIG_NAMES
                                   for key in (paths.host_config(hostname, name), paths.global_config(name)))

    def get(self, name):
        return paths.config_value(self.values.get, self.hostname, name)

    def is_config_key(self, key):
        return key in self._all_keys

    @property
    def interface_prefix(self):
        value = self.get("InterfacePrefix")
        try:
            return model.parse_interface_prefix(value)
        except ValidationError as exc:
            LOG.warning("%s Using %r.", exc, model.DEFAULT_INTERFACE_PREFIX)
            return model.DEFAULT_INTERFACE_PREFIX

    @property
    def host_action(self):
        value = self.get("DefaultEndpointToHostAction")
        if value is None:
            return rules_mod.DEFAULT_HOST_ACTION
        if value.upper() not in rules_mod.HOST_ACTIONS:
            LOG.warning("Ignoring invalid DefaultEndpointToHostAction %r; using %s.", value,
                        rules_mod.DEFAULT_HOST_ACTION)
            return rules_mod.DEFAULT_HOST_ACTION
        return value.upper()


class EndpointParser:
    """``parse_endpoint`` remembering the last result per key.

    The policy, routes and tunnel indexes read the same endpoint leaves;
    sharing one parser (the dispatcher's ``Indexes`` hold it) parses each
    value once. Endpoints are frozen, so sharing them is safe.

    :param hostname: this host: its endpoints are read whole (``Endpoint``),
        other hosts' only as far as this host needs them
        (``EndpointAddresses``); None reads every endpoint whole.
    :param previous: the parser of the view this one replaces: values it
        parsed already are not parsed again (until ``forget_previous``).
    """

    def __init__(self, hostname=None, previous=None):
        self.hostname = hostname
        self._cache = {}
        """etcd key -> (value, result) of the last parse."""
        self._previous = previous._cache if previous is not None else {}

    def forget_previous(self):
        self._previous = {}

    def __call__(self, key, value):
        key = as_key(key)
        if value is None:
            self._cache.pop(key.path, None)
            return parse_endpoint(key, None)
        cached = self._cache.get(key.path) or self._previous.get(key.path)
        if cached is not None and cached[0] == value:
            self._cache[key.path] = cached
            return cached[1]
        result = parse_endpoint(key, value, self.hostname)
        if result is not None:
            self._cache[key.path] = (value, result)
        return result


def parse_endpoint(key, value, hostname=None):
    """(EndpointKey, endpoint or None) for an endpoint leaf (a path or a
    keys.Key); None if not one. The endpoint is an ``Endpoint``, or, when
    ``hostname`` is given and the leaf is another host's, an
    ``EndpointAddresses`` (all this host needs of it, read faster)."""
    key = as_key(key)
    if key.kind is not Kind.ENDPOINT:
        return None
    ep_key = model.EndpointKey(*key.parts)
    if value is None:
        return ep_key, None
    try:
        if hostname is not None and ep_key.hostname != hostname:
            return ep_key, model.EndpointAddresses.from_json(value)
        return ep_key, model.Endpoint.from_json(ep_key, value)
    except ValidationError as exc:
        LOG.warning("Ignoring invalid endpoint at %s: %s", key.path, exc)
        return ep_key, None


class PolicyIndex:
    """Everything the policy dataplane derives its chains and sets from."""

    def __init__(self, hostname, parser=None, etcd_endpoints=()):
        self.hostname = hostname
        self._parse = parser or parse_endpoint
        self.control_plane = ControlPlaneIndex(etcd_endpoints)
        """What workloads must not reach (control_plane.py); survives resets,
        which forget only what came from etcd."""
        self.reset()

    def reset(self):
        self.control_plane.reset()
        self.config = _Config(self.hostname)
        self.endpoints = {}
        """etcd key -> Endpoint (valid ones, every host)."""
        self.rules = {}
        """profile -> Rules, or None when the rules key holds bad data."""
        self.tags = {}
        """profile -> tuple of tags (valid ones)."""
        self._profile_keys = set()
        """etcd keys of profile rules/tags leaves we have seen (valid or not)."""
        self._members = defaultdict(set)
        """profile -> etcd keys of endpoints (every host) listing it."""
        self._tag_counts = defaultdict(lambda: defaultdict(int))
        """(tag, version) -> address -> number of (endpoint, profile) carrying it."""
        self._iface_claims = defaultdict(set)
        """local interface name -> etcd keys of local endpoints naming it."""
        self.local = {}
        """local interface name -> (etcd key, Endpoint) of endpoints that get chains."""
        self._users = defaultdict(set)
        """profile -> local interface names whose endpoint uses it."""
        self.changes = Changes(config=True)

    # -- queries -----------------------------------------------------------------------
    @property
    def interface_prefix(self):
        return self.config.interface_prefix

    @property
    def host_action(self):
        return self.config.host_action

    def profile_rules(self, profile):
        return self.rules.get(profile)

    def used_profiles(self):
        return set(self._users)

    def is_used(self, profile):
        return profile in self._users

    def tag_members(self, tag, version):
        return {ip for ip, count in self._tag_counts.get((tag, version), {}).items() if count > 0}

    def tag_has(self, tag, version, ip):
        counts = self._tag_counts.get((tag, version))
        return bool(counts and counts.get(ip, 0) > 0)

    def local_endpoint(self, iface):
        entry = self.local.get(iface)
        return entry[1] if entry else None

    def take_changes(self):
        changes, self.changes = self.changes, Changes()
        changes.control_plane |= self.control_plane.take_changed()
        return changes

    # -- updates -----------------------------------------------------------------------
    def apply_snapshot(self, items, parser=None):
        """Replace everything with ``items`` (a mapping, or pairs, of path or
        keys.Key -> value); ``parser``: the endpoint parser to use from now on."""
        self.reset()
        if parser is not None:
            self._parse = parser
        pairs = [(as_key(key), value) for key, value in (items.items() if hasattr(items, "items") else items)]
        # Config first: the interface prefix decides which endpoints are usable.
        for key, value in pairs:
            if self._is_config(key):
                self.config.values[key.path] = value
        for key, value in pairs:
            if not self._is_config(key):
                self.apply(key, value)

    def _is_config(self, key):
        return key.kind is Kind.CONFIG and self.config.is_config_key(key.path)

    def apply(self, key, value):
        """One etcd leaf (a path or keys.Key) set (value) or deleted (None;
        also whole directories)."""
        key = as_key(key)
        if self._is_config(key):
            self._set_config(key.path, value)
        elif key.kind is Kind.ENDPOINT:
            parsed = self._parse(key, value)
            self._set_endpoint(key.path, parsed[0], parsed[1])
        elif key.kind is Kind.PROFILE:
            name, field_name = key.parts
            if field_name == "rules":
                self._set_rules(key.path, name, value)
            else:
                self._set_tags(key.path, name, value)
        elif not self.control_plane.apply(key.path, value) and value is None:
            self._delete_tree(key.path)

    def _delete_tree(self, key):
        prefix = key.rstrip("/") + "/"
        for leaf in [k for k in self.endpoints if k.startswith(prefix)]:
            self.apply(leaf, None)
        for leaf in [k for k in self._profile_keys if k.startswith(prefix)]:
            self.apply(leaf, None)
        for leaf in [k for k in self.config.values if k.startswith(prefix)]:
            self._set_config(leaf, None)

    def _set_config(self, key, value):
        before = (self.config.interface_prefix, self.config.host_action)
        if value is None:
            self.config.values.pop(key, None)
        else:
            self.config.values[key] = value
        after = (self.config.interface_prefix, self.config.host_action)
        if after != before:
            self.changes.config = True
            if after[0] != before[0]:
                self._reclaim_all_interfaces()

    # -- endpoints ---------------------------------------------------------------------
    def _set_endpoint(self, key, ep_key, endpoint):
        old = self.endpoints.get(key)
        if old == endpoint:
            return
        if old is not None:
            self._count_tags(old, -1)
            for profile in set(old.profile_ids):
                members = self._members.get(profile)
                if members is not None:
                    members.discard(key)
                    if not members:
                        del self._members[profile]
        if endpoint is None:
            self.endpoints.pop(key, None)
        else:
            self.endpoints[key] = endpoint
            self._count_tags(endpoint, +1)
            for profile in set(endpoint.profile_ids):
                self._members[profile].add(key)
        if ep_key.hostname == self.hostname:
            self._update_local(key, old, endpoint)

    def _count_tags(self, endpoint, delta):
        # One count per (profile carrying the tag): an address stays while
        # any of its profiles still carries the tag.
        for profile in set(endpoint.profile_ids):
            self._count_profile_tags(endpoint, self.tags.get(profile, ()), delta)

    def _usable_interface(self, endpoint):
        """The endpoint's interface name if it should get chains, else None."""
        if endpoint is None or endpoint.state != "active" or not endpoint.profile_ids:
            return None
        if rules_mod.validate_interface_name(endpoint.name, self.interface_prefix) is None:
            LOG.warning("Endpoint %s: interface name %r does not fit prefix %r; it gets no chains.",
                        endpoint.endpoint_id, endpoint.name, self.interface_prefix)
            return None
        return endpoint.name

    def _update_local(self, key, old, new):
        old_iface = old.name if old is not None else None
        if old_iface is not None:
            claims = self._iface_claims.get(old_iface)
            if claims is not None:
                claims.discard(key)
                if not claims:
                    del self._iface_claims[old_iface]
        if new is not None:
            self._iface_claims[new.name].add(key)
        for iface in {old_iface, new.name if new is not None else None} - {None}:
            self._reclaim_interface(iface)

    def _reclaim_interface(self, iface):
        """Recompute which endpoint (if any) owns ``iface`` and note changes."""
        claims = self._iface_claims.get(iface)
        entry = None
        if claims:
            if len(claims) > 1:
                LOG.warning("Interface %s is claimed by several endpoints (%s); using the first.",
                            iface, ", ".join(sorted(claims)))
            for key in sorted(claims):
                endpoint = self.endpoints.get(key)
                if self._usable_interface(endpoint) == iface:
                    entry = (key, endpoint)
                    break
        previous = self.local.get(iface)
        if previous == entry:
            return
        old_profiles = set(previous[1].profile_ids) if previous else set()
        new_profiles = set(entry[1].profile_ids) if entry else set()
        if entry is None:
            del self.local[iface]
        else:
            self.local[iface] = entry
        self.changes.ifaces.add(iface)
        for profile in old_profiles - new_profiles:
            users = self._users.get(profile)
            if users is not None:
                users.discard(iface)
                if not users:
                    del self._users[profile]
                    self.changes.profiles.add(profile)
        for profile in new_profiles - old_profiles:
            if profile not in self._users:
                self.changes.profiles.add(profile)
            self._users[profile].add(iface)

    def _reclaim_all_interfaces(self):
        for iface in list(self.local):
            self._reclaim_interface(iface)
        for iface in list(self._iface_claims):
            self._reclaim_interface(iface)

    # -- profiles ----------------------------------------------------------------------
    def _set_rules(self, key, name, value):
        if value is None:
            self._profile_keys.discard(key)
            if name not in self.rules:
                return
            del self.rules[name]
        else:
            self._profile_keys.add(key)
            stored = model.StoredRules.read(name, value)
            parsed = stored.rules
            if parsed is None:
                # As Felix: one rule it rejects makes the whole rules object absent.
                LOG.warning("Profile %s: invalid rules, which Felix rejects (%s); its chains will drop "
                            "everything.", name, "; ".join(stored.problems))
            if name in self.rules and self.rules[name] == parsed:
                return
            self.rules[name] = parsed
        self.changes.profiles.add(name)

    def _set_tags(self, key, name, value):
        if value is None:
            self._profile_keys.discard(key)
            tags = ()
        else:
            self._profile_keys.add(key)
            try:
                tags = model.parse_tags_json(value)
            except ValidationError as exc:
                LOG.warning("Profile %s: invalid tags (%s); treating it as untagged.", name, exc)
                tags = ()
        old = self.tags.get(name, ())
        if old == tags:
            return
        # Withdraw every member's contribution under the old tags, then add
        # it back under the new ones.
        members = [self.endpoints[k] for k in self._members.get(name, ()) if k in self.endpoints]
        for endpoint in members:
            self._count_profile_tags(endpoint, old, -1)
        if tags:
            self.tags[name] = tags
        else:
            self.tags.pop(name, None)
        for endpoint in members:
            self._count_profile_tags(endpoint, tags, +1)

    def _count_profile_tags(self, endpoint, tags, delta):
        """Add ``delta`` to the count of each of ``endpoint``'s addresses in each of ``tags``."""
        if not tags:
            return
        for version in (4, 6):
            addresses = _endpoint_addresses(endpoint, version)
            if not addresses:
                continue
            for tag in tags:
                counts = self._tag_counts[(tag, version)]
                dirty = self.changes.tag_ips[(tag, version)]
                for address in addresses:
                    counts[address] += delta
                    if counts[address] <= 0:
                        del counts[address]
                    dirty.add(address)
                if not counts:
                    del self._tag_counts[(tag, version)]
