"""Typed model of a profile's rules (``/calico/v1/policy/profile/<P>/rules``).

Other tools write this key too (the original Felix reads it), so two
questions get two answers here, decided by one validator:

- **Reading** (``StoredRules.read``): what Felix accepts. The stored JSON is
  kept exactly as it is (writing an edit back leaves every other rule and
  key untouched) and each rule gets Felix's verdict: a typed ``Rule`` when
  Felix accepts it, else the reason it rejects it. One rejected rule makes
  Felix reject the profile's whole rules object, so ``StoredRules.rules`` is
  then None and the agent drops its endpoints' traffic, as Felix does.
- **Writing** (``Rules.from_user_json``, ``Rule.check_writable``): the
  stricter, normalised form calicoctl produces: notations the CLI
  understands are rewritten (``"80:80"`` -> 80, ``"1-2"`` -> ``"1:2"``,
  ``"6"`` -> 6), and rules that Felix accepts but that could never match or
  that the agent can only replace by a DROP are refused.

``Rule.validate`` is Felix's acceptance, field by field, as read from
projectcalico/felix ``calico/common.py`` (``validate_rules`` and
``validate_rule_port``; docs/profile-rules.md has the whole table). Where
Felix's Python let a value through by accident and then produced broken
iptables input (``true`` as a protocol or port, ``6.0``, spaces inside a
port range, a tag ending in a newline) we reject it: the profile then drops,
which is what Felix's failed iptables update amounted to.
"""
import json
from dataclasses import dataclass
from typing import Optional, Union

from calicoctl import validate
from calicoctl.errors import ValidationError

ACTIONS = ("allow", "deny")
DIRECTIONS = ("inbound", "outbound")
# The order keys appear in when a rule is written as JSON (Felix's KNOWN_RULE_KEYS).
RULE_KEYS = ("action", "protocol", "ip_version", "icmp_type", "icmp_code",
             "src_tag", "src_net", "src_ports", "dst_tag", "dst_net", "dst_ports")

# Protocol names Felix accepts (besides the numbers 1-255, as ints or strings).
PROTOCOL_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132, "udplite": 136}
# Protocols a port match works with: tcp, udp, udplite, sctp and dccp (33,
# which Felix accepts only as a number: "dccp" is not one of its names).
PORT_PROTOCOL_NUMBERS = frozenset((6, 17, 136, 132, 33))
ICMP_FAMILY = {1: 4, 58: 6}          # protocol number -> the only IP version it exists in
MAX_PORT = 65535


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _rule_fields(data):
    """The fields of a rule's JSON object ``data`` (nulls count as absent, as
    in Felix), port lists as tuples; raises ValidationError for anything but
    an object of known fields."""
    if not isinstance(data, dict):
        raise ValidationError("a rule must be a JSON object, not %s" % _show(data))
    values = {key: value for key, value in data.items() if value is not None}
    unknown = sorted(set(values) - set(RULE_KEYS))
    if unknown:
        raise ValidationError("unknown field(s) %s" % ", ".join(unknown))
    for key in ("src_ports", "dst_ports"):
        if key in values:
            if not isinstance(values[key], list):
                raise ValidationError("%s must be a list" % key)
            values[key] = tuple(values[key])
    return values


def _show(value):
    """A value as it appears in JSON, for messages."""
    return json.dumps(value, default=repr)


def protocol_number(protocol):
    """The IP protocol number a stored protocol value stands for, or None if
    Felix does not accept it: a name above, an int 1-255, or the same number
    as a decimal string ("6")."""
    if _is_int(protocol):
        return protocol if 1 <= protocol <= 255 else None
    if not isinstance(protocol, str):
        return None
    if protocol in PROTOCOL_NUMBERS:
        return PROTOCOL_NUMBERS[protocol]
    if validate.DIGITS_RE.match(protocol) and str(int(protocol)) == protocol and 1 <= int(protocol) <= 255:
        return int(protocol)
    return None


def _port_problem(port):
    """Why Felix rejects one item of a port list, or None: an int 0-65535 or
    a string range "lo:hi" with lo below hi (so "80:80" and "80" are rejected)."""
    if _is_int(port):
        return None if 0 <= port <= MAX_PORT else "port %d is out of range 0-65535" % port
    if not isinstance(port, str):
        return "port %s is neither a number nor a range \"lo:hi\"" % _show(port)
    low, colon, high = port.partition(":")
    if not colon or not validate.DIGITS_RE.match(low) or not validate.DIGITS_RE.match(high):
        return "port %s is neither a number nor a range \"lo:hi\"" % _show(port)
    if not int(low) < int(high) <= MAX_PORT:
        return "port range %s must run upwards within 0-65535" % _show(port)
    return None


def _icmp_problem(value, what):
    if not _is_int(value):
        return "%s %s is not an integer" % (what, _show(value))
    if not 0 <= value <= 255:
        return "%s %d is out of range 0-255" % (what, value)
    return None


def _protocol_words(protocol):
    return protocol if protocol in PROTOCOL_NUMBERS else "protocol %s" % protocol


@dataclass(frozen=True)
class Rule:
    """One policy rule that Felix accepts; unset fields match anything.

    Values are kept as written (protocol 6, "6" or "tcp"; a CIDR with host
    bits set): ``protocol_number`` and the agent's renderer give them their
    meaning.
    """
    action: str = "allow"
    protocol: Optional[Union[str, int]] = None
    ip_version: Optional[int] = None
    icmp_type: Optional[int] = None
    icmp_code: Optional[int] = None
    src_tag: Optional[str] = None
    src_net: Optional[str] = None
    src_ports: Optional[tuple] = None
    dst_tag: Optional[str] = None
    dst_net: Optional[str] = None
    dst_ports: Optional[tuple] = None

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raise ValidationError (the reason) unless Felix accepts the rule."""
        if self.action not in ACTIONS:
            raise ValidationError("action %s is neither allow nor deny" % _show(self.action))
        number = protocol_number(self.protocol)
        if self.protocol is not None and number is None:
            raise ValidationError(
                "protocol %s is not one Felix knows (%s, or a number 1-255)"
                % (_show(self.protocol), ", ".join(PROTOCOL_NUMBERS)))
        if self.ip_version is not None and (not _is_int(self.ip_version) or self.ip_version not in (4, 6)):
            raise ValidationError("ip_version %s is neither 4 nor 6" % _show(self.ip_version))
        # Felix compares the names only: protocol 1 with ip_version 6 passes.
        if (self.protocol, self.ip_version) in (("icmp", 6), ("icmpv6", 4)):
            raise ValidationError("protocol %s cannot be used with ip_version %d"
                                  % (self.protocol, self.ip_version))
        for key in ("src_tag", "dst_tag"):
            tag = getattr(self, key)
            if tag is not None and not (isinstance(tag, str) and validate.NAME_RE.match(tag)):
                raise ValidationError("%s %s has characters other than letters, digits, '_', '.' and '-'"
                                      % (key, _show(tag)))
        for key in ("src_net", "dst_net"):
            net = getattr(self, key)
            if net is None:
                continue
            try:
                parsed = validate.parse_cidr(net)
            except ValidationError:
                raise ValidationError("%s %s is not a CIDR" % (key, _show(net))) from None
            if self.ip_version is not None and parsed.version != self.ip_version:
                raise ValidationError("%s %s is not an IPv%d CIDR, as ip_version says"
                                      % (key, net, self.ip_version))
        for key in ("src_ports", "dst_ports"):
            ports = getattr(self, key)
            if ports is None:
                continue
            if not isinstance(ports, tuple):
                raise ValidationError("%s must be a list" % key)
            if number not in PORT_PROTOCOL_NUMBERS:
                raise ValidationError("%s needs protocol tcp, udp, udplite, sctp or one of the numbers "
                                      "6, 17, 136, 132, 33 (dccp), not %s"
                                      % (key, _show(self.protocol)))
            for port in ports:
                problem = _port_problem(port)
                if problem:
                    raise ValidationError("%s: %s" % (key, problem))
        # No protocol check here: Felix takes an ICMP type with any protocol
        # (see drop_reason for what that means on the wire).
        if self.icmp_type is not None:
            problem = _icmp_problem(self.icmp_type, "icmp_type")
            if problem:
                raise ValidationError(problem)
        if self.icmp_code is not None:
            problem = _icmp_problem(self.icmp_code, "icmp_code")
            if problem:
                raise ValidationError(problem)
            if self.icmp_type is None:
                raise ValidationError("icmp_code needs an icmp_type")

    @property
    def protocol_number(self):
        return protocol_number(self.protocol)

    @property
    def drop_reason(self):
        """Why the agent puts a DROP of all traffic in this rule's place, or None.

        Felix accepts these rules but iptables cannot express them; Felix
        then programs a DROP at the rule's position (projectcalico/felix
        calico/felix/frules.py, rule_to_iptables_fragments, which does this
        explicitly for ICMP type 255), and so do we.
        """
        if self.icmp_type is None:
            return None
        if self.icmp_type == 255:
            return "the kernel cannot match ICMP type 255"
        if self.protocol_number not in ICMP_FAMILY:
            return "an ICMP type needs protocol icmp or icmpv6"
        return None

    @classmethod
    def from_dict(cls, data):
        """The stored JSON of one rule, as Felix reads it (no rewriting).

        Null values count as absent, as in Felix. Raises ValidationError
        with Felix's reason for rejecting it.
        """
        return cls(**_rule_fields(data))

    @classmethod
    def from_user_dict(cls, data):
        """A rule given to ``rule update``, in calicoctl's written form.

        Accepts the notations the command line accepts and rewrites them
        (ports "80:80" -> 80, "1-2" -> "1:2", "53" -> 53; protocol "6" -> 6;
        CIDRs with host bits cleared), then checks the result as Felix
        would and as ``check_writable`` wants it.
        """
        if not isinstance(data, dict):
            raise ValidationError("Invalid rule %s: expected a JSON object." % _show(data))
        try:
            values = _rule_fields(data)
        except ValidationError as exc:
            raise ValidationError("Invalid rule: %s." % exc) from None
        for key in ("src_ports", "dst_ports"):
            if key in values:
                values[key] = tuple(validate.parse_port_item(p) for p in values[key])
        for key in ("icmp_type", "icmp_code", "ip_version"):
            if key in values and not _is_int(values[key]):
                raise ValidationError("Invalid rule: %s must be an integer." % key)
        protocol = values.get("protocol")
        if isinstance(protocol, str) and protocol_number(protocol) is not None \
                and protocol not in PROTOCOL_NUMBERS:
            values["protocol"] = int(protocol)
        for key in ("src_tag", "dst_tag"):
            if key in values:
                validate.parse_name(values[key], "tag")
        for key in ("src_net", "dst_net"):
            if key in values:
                values[key] = str(validate.parse_cidr(values[key]))
        try:
            rule = cls(**values)
        except ValidationError as exc:
            raise ValidationError("Invalid rule: %s." % exc) from None
        return rule.check_writable()

    def check_writable(self):
        """Refuse what calicoctl does not write although Felix accepts it:
        rules that could never match, and rules the agent can only replace
        by a DROP (``drop_reason``). Returns the rule."""
        for ports in (self.src_ports, self.dst_ports):
            if ports is not None and not ports:
                raise ValidationError("Invalid ports: the list is empty (leave the field out to match any port).")
        if self.icmp_type is not None and self.protocol_number not in ICMP_FAMILY:
            raise ValidationError("icmp_type is only valid with protocol icmp or icmpv6.")
        if self.icmp_type == 255:
            raise ValidationError("Invalid ICMP type 255: the kernel cannot match it, so Felix drops all "
                                  "traffic at such a rule; use 0-254.")
        versions = {validate.parse_cidr(net).version for net in (self.src_net, self.dst_net) if net is not None}
        if len(versions) > 1:
            raise ValidationError("Rule mixes an IPv4 and an IPv6 CIDR; it could never match.")
        family = ICMP_FAMILY.get(self.protocol_number)
        if family is not None:
            other = 6 if family == 4 else 4
            if other in versions or self.ip_version == other:
                raise ValidationError("%s rules match IPv%d only; use %s for IPv%d."
                                      % (_protocol_words(self.protocol), family,
                                         "icmpv6" if other == 6 else "icmp", other))
        return self

    def to_dict(self):
        result = {}
        for key in RULE_KEYS:
            value = getattr(self, key)
            if value is not None:
                result[key] = list(value) if key.endswith("_ports") else value
        return result

    def describe(self):
        """Human-readable form used by ``rule show`` (pure)."""
        words = [self.action]
        if self.protocol is not None:
            words.append(_protocol_words(self.protocol))
        if self.icmp_type is not None:
            words += ["type", str(self.icmp_type)]
            if self.icmp_code is not None:
                words += ["code", str(self.icmp_code)]
        for direction, ports, tag, net in (("from", self.src_ports, self.src_tag, self.src_net),
                                           ("to", self.dst_ports, self.dst_tag, self.dst_net)):
            parts = []
            if ports is not None:
                parts += ["ports", ",".join(str(p) for p in ports) if ports else "[] (any port)"]
            if tag:
                parts += ["tag", tag]
            if net:
                parts += ["cidr", net]
            if parts:
                words += [direction] + parts
        if self.ip_version is not None:
            words += ["(IPv%d only)" % self.ip_version]
        if self.drop_reason:
            words += ["(the agent drops all traffic at this rule: %s)" % self.drop_reason]
        return " ".join(words)


@dataclass(frozen=True)
class Rules:
    """A profile's inbound and outbound rule lists, evaluated in order."""
    id: str
    inbound_rules: tuple = ()
    outbound_rules: tuple = ()

    @classmethod
    def default_for(cls, profile_name):
        """New profiles: members accept traffic from members, may send anywhere."""
        return cls(id=profile_name,
                   inbound_rules=(Rule(action="allow", src_tag=profile_name),),
                   outbound_rules=(Rule(action="allow"),))

    @classmethod
    def from_user_json(cls, text, profile_name):
        """The JSON ``rule update`` reads, in calicoctl's written form (see
        ``Rule.from_user_dict``); the first problem found is raised, naming
        the rule."""
        data = _load_json(text)
        if not isinstance(data, dict):
            raise ValidationError("Invalid rules: expected a JSON object.")
        unknown = set(data) - {"id", "inbound_rules", "outbound_rules"}
        if unknown:
            raise ValidationError("Invalid rules: unknown field(s) %s." % ", ".join(sorted(unknown)))
        if data.get("id") != profile_name:
            raise ValidationError("Rules id %s does not match profile name %r."
                                  % (json.dumps(data.get("id")), profile_name))
        lists = {}
        for direction in DIRECTIONS:
            key = direction + "_rules"
            value = data.get(key, [])
            if not isinstance(value, list):
                raise ValidationError("Invalid rules: %s must be a list." % key)
            converted = []
            for index, item in enumerate(value, 1):
                try:
                    converted.append(Rule.from_user_dict(item))
                except ValidationError as exc:
                    raise ValidationError("%s rule %d: %s" % (direction, index, exc)) from None
            lists[key] = tuple(converted)
        return cls(id=profile_name, **lists)

    def to_dict(self):
        return {"id": self.id,
                "inbound_rules": [r.to_dict() for r in self.inbound_rules],
                "outbound_rules": [r.to_dict() for r in self.outbound_rules]}

    def to_json(self, indent=None):
        return json.dumps(self.to_dict(), indent=indent)


def _load_json(text):
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValidationError("Invalid JSON for rules: %s" % exc) from None


@dataclass(frozen=True, eq=False)
class StoredRule:
    """One stored rule: its JSON as written, and Felix's verdict on it."""
    data: object
    rule: Optional[Rule] = None       # when Felix accepts it
    problem: Optional[str] = None     # why Felix rejects it

    @classmethod
    def read(cls, data):
        try:
            return cls(data, Rule.from_dict(data))
        except ValidationError as exc:
            return cls(data, problem=str(exc))

    @classmethod
    def of(cls, rule):
        """A rule calicoctl is about to write."""
        return cls(rule.to_dict(), rule)

    def __eq__(self, other):
        # Rules Felix accepts are the same rule when they mean the same
        # (null fields, key order and a missing action do not count);
        # rejected ones only when written identically.
        if not isinstance(other, StoredRule):
            return NotImplemented
        if self.rule is not None or other.rule is not None:
            return self.rule == other.rule
        return self.data == other.data

    __hash__ = None

    def describe(self):
        if self.rule is not None:
            return self.rule.describe()
        return "INVALID %s: %s" % (json.dumps(self.data), self.problem)


@dataclass(frozen=True)
class StoredRules:
    """A profile's rules key exactly as stored, with Felix's verdict.

    ``problems`` lists every reason Felix rejects the value ("inbound rule 2:
    ..."); empty means Felix accepts it and ``rules`` is the typed reading.
    """
    profile: str
    text: Optional[str] = None        # None: the profile has no rules key
    data: Optional[dict] = None       # the parsed JSON object, when it is one
    inbound: tuple = ()               # StoredRule of each readable list
    outbound: tuple = ()
    problems: tuple = ()
    unreadable: tuple = ()            # directions whose list is not a list

    @classmethod
    def read(cls, profile, text):
        """Never raises: whatever is stored gets a verdict."""
        if text is None:
            return cls(profile)
        try:
            data = json.loads(text)
        except ValueError as exc:
            return cls(profile, text, problems=("not JSON (%s)" % exc,), unreadable=DIRECTIONS)
        if not isinstance(data, dict):
            return cls(profile, text, problems=("not a JSON object",), unreadable=DIRECTIONS)
        lists, problems, unreadable = {}, [], []
        for direction in DIRECTIONS:
            key = direction + "_rules"
            # Felix takes a missing list as empty (its later _validate_rules;
            # 0.28 refused it) and ignores the id and any other field.
            value = data.get(key, [])
            if not isinstance(value, list):
                problems.append("%s is not a list" % key)
                unreadable.append(direction)
                value = []
            lists[direction] = tuple(StoredRule.read(item) for item in value)
            problems += ["%s rule %d: %s" % (direction, index, item.problem)
                         for index, item in enumerate(lists[direction], 1) if item.problem]
        return cls(profile, text, data, lists["inbound"], lists["outbound"], tuple(problems), tuple(unreadable))

    @property
    def accepted(self):
        return not self.problems

    @property
    def rules(self):
        """The typed Rules Felix enforces, or None when it rejects them."""
        if not self.accepted:
            return None
        return Rules(id=self.profile, inbound_rules=tuple(item.rule for item in self.inbound),
                     outbound_rules=tuple(item.rule for item in self.outbound))

    def entries(self, direction):
        return self.inbound if direction == "inbound" else self.outbound

    def check_editable(self, direction):
        """Refuse to edit a list that is not one (or a value that is not JSON)."""
        if direction in self.unreadable:
            raise ValidationError("The %s rules of profile %s cannot be edited one by one (%s); replace "
                                  "them with 'rule update'." % (direction, self.profile, self.problems[0]))

    def replaced(self, direction, entries):
        """The stored JSON text with one direction's list replaced by
        ``entries`` (StoredRules); every other field is kept as it was."""
        self.check_editable(direction)
        base = dict(self.data) if self.data is not None else Rules(id=self.profile).to_dict()
        base[direction + "_rules"] = [entry.data for entry in entries]
        return json.dumps(base)

    def pretty_text(self):
        """What ``rule json`` prints: the stored JSON indented, or the
        stored text itself when it is not JSON."""
        if self.text is None:
            return Rules(id=self.profile).to_json(indent=2)
        try:
            return json.dumps(json.loads(self.text), indent=2)
        except ValueError:
            return self.text
