"""Pure validators for user input and etcd data.

Each ``parse_*`` returns a normalised value or raises ValidationError with
a message fit to show the user. No I/O.
"""
import re

from calicoctl.errors import ValidationError

# \Z, not $: "$" also matches before a trailing newline ("abc\n").
NAME_RE = re.compile(r"^[a-zA-Z0-9_.-]+\Z")
# ASCII digits only: int() also takes "1_000", "+5", " 7" and non-ASCII digits.
DIGITS_RE = re.compile(r"^[0-9]+\Z")
MAX_AS = 4294967295


def parse_name(value, what="name"):
    """Profile names, tags, endpoint IDs: letters, digits, '_', '.', '-'."""
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ValidationError(
            "Invalid %s %r: use only letters, digits, '_', '.' and '-'." % (what, value))
    if value in (".", ".."):
        # etcd cleans key paths: ".." would name the parent directory.
        raise ValidationError("Invalid %s %r: '.' and '..' are not names." % (what, value))
    return value


def parse_ip(value, version=None, what="IP address"):
    """An IPv4/IPv6 address (netaddr.IPAddress), optionally of one version."""
    import netaddr
    try:
        if not isinstance(value, str) or "/" in value:
            raise ValueError
        ip = netaddr.IPAddress(value, flags=netaddr.INET_PTON) if ":" not in value \
            else netaddr.IPAddress(value)
    except (ValueError, netaddr.AddrFormatError, TypeError):
        raise ValidationError("Invalid %s: %r." % (what, value)) from None
    if version is not None and ip.version != version:
        raise ValidationError("Invalid %s: %r is not an IPv%d address." % (what, value, version))
    return ip


def parse_cidr(value, what="CIDR"):
    """A network (netaddr.IPNetwork) with host bits cleared."""
    import netaddr
    try:
        if not isinstance(value, str):
            raise ValueError
        # netaddr tolerates "/ 8", "/+8" and a trailing newline; users never mean those.
        _, slash, prefix = value.partition("/")
        if slash and not DIGITS_RE.match(prefix):
            raise ValueError
        if value != value.strip():
            raise ValueError
        if ":" not in value:
            address = value.split("/")[0]
            # netaddr accepts '10.1' as an IPv4 address; a user never means that.
            if address.count(".") != 3:
                raise ValueError
        net = netaddr.IPNetwork(value)
    except (ValueError, netaddr.AddrFormatError, TypeError):
        raise ValidationError("Invalid %s: %r." % (what, value)) from None
    return net.cidr


def _parse_digits(value):
    """A non-negative decimal integer written with ASCII digits only."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or not DIGITS_RE.match(value):
        raise ValueError(value)
    return int(value, 10)


def parse_as_number(value):
    try:
        number = _parse_digits(value)
    except ValueError:
        raise ValidationError("Invalid AS number %r: expected an integer from 0 to %d." % (value, MAX_AS)) from None
    if not 0 <= number <= MAX_AS:
        raise ValidationError("Invalid AS number %r: expected an integer from 0 to %d." % (value, MAX_AS))
    return number


def parse_cluster_id(value):
    """A route reflector cluster ID: a 32-bit number written as an IPv4 address.

    0.0.0.0 is refused: BIRD reads it as "unset" and would use its router id.
    """
    message = "Invalid route reflector cluster ID %r: expected an IPv4 address such as 244.0.0.1." % (value,)
    try:
        ip = parse_ip(value, 4)
    except ValidationError:
        raise ValidationError(message) from None
    if int(ip) == 0:
        raise ValidationError(message)
    return str(ip)


def parse_port_list(text):
    """'80,443,1000:2000' (or 1000-2000) -> [80, 443, '1000:2000']; '8080:8080' -> [8080]."""
    items = []
    if not isinstance(text, str) or not text:
        raise ValidationError("Invalid ports %r: expected a comma-separated list of ports or ranges." % (text,))
    for part in text.split(","):
        items.append(parse_port_item(part, source=text))
    return items


def parse_port_item(item, source=None):
    """One port (int) or range ('lo:hi'); accepts ints and 'a:b'/'a-b' strings.

    A range of one port becomes that port: Felix accepts a range only when
    its start is below its end (projectcalico/felix calico/common.py,
    validate_rule_port), and one rule it rejects drops the whole profile.
    """
    shown = source if source is not None else item
    error = ValidationError(
        "Invalid ports %r: expected a comma-separated list of ports (0-65535) or ranges lo:hi." % (shown,))
    if isinstance(item, bool):
        raise error
    if isinstance(item, int):
        if 0 <= item <= 65535:
            return item
        raise error
    if not isinstance(item, str):
        raise error
    match = re.match(r"^([0-9]+)(?:[:-]([0-9]+))?\Z", item.strip())
    if not match:
        raise error
    low = int(match.group(1))
    if match.group(2) is None:
        if low > 65535:
            raise error
        return low
    high = int(match.group(2))
    if low > 65535 or high > 65535 or low > high:
        raise error
    return low if low == high else "%d:%d" % (low, high)


def parse_icmp_value(value, what="ICMP type", highest=254):
    """ICMP type 0..254 (the kernel reads type 255 as "any type", so Felix
    cannot match it); pass highest=255 for a code."""
    error = ValidationError("Invalid %s %r: expected an integer from 0 to %d." % (what, value, highest))
    try:
        number = _parse_digits(value)
    except ValueError:
        raise error from None
    if not 0 <= number <= highest:
        raise error
    return number
