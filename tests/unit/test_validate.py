"""Pure validators: what users may type, and what is refused."""
import pytest

from calicoctl import validate
from calicoctl.errors import ValidationError


@pytest.mark.parametrize("name", ["A", "PROF_1_3_5", "web.front-end", "x" * 200, "0"])
def test_names_accepted(name):
    assert validate.parse_name(name) == name


@pytest.mark.parametrize("name", ["", "a b", "a/b", "prof!", "abc\n", "\nabc", "é", None, 5, "a\tb", ".", ".."])
def test_names_refused(name):
    with pytest.raises(ValidationError):
        validate.parse_name(name, "profile name")


def test_name_error_says_what_and_value():
    with pytest.raises(ValidationError) as error:
        validate.parse_name("a/b", "tag")
    assert "tag" in str(error.value) and "'a/b'" in str(error.value)


@pytest.mark.parametrize("text,expected", [
    ("10.0.0.0/8", "10.0.0.0/8"),
    ("10.1.2.3/8", "10.0.0.0/8"),          # host bits cleared
    ("192.168.1.7", "192.168.1.7/32"),
    ("fed0:8001::/64", "fed0:8001::/64"),
    ("fed0:8001::1/64", "fed0:8001::/64"),
    ("0.0.0.0/0", "0.0.0.0/0"),
    ("::/0", "::/0"),
])
def test_cidrs_accepted_and_normalised(text, expected):
    assert str(validate.parse_cidr(text)) == expected


@pytest.mark.parametrize("text", ["10.0.0.0/33", "10.1/16", "10.0.0/24", "300.0.0.0/8", "10.0.0.0/",
                                  "10.0.0.0/ 8", "10.0.0.0/+8", "10.0.0.0/8\n", " 10.0.0.0/8",
                                  "fe80::/129", "nonsense", "", None, "010.0.0.0/8"])
def test_cidrs_refused(text):
    with pytest.raises(ValidationError):
        validate.parse_cidr(text)


@pytest.mark.parametrize("text,version", [("1.2.3.4", 4), ("::1", 6), ("fd00::5", 6), ("255.255.255.255", 4)])
def test_ips_accepted(text, version):
    assert validate.parse_ip(text).version == version
    assert validate.parse_ip(text, version).version == version


@pytest.mark.parametrize("text", ["1.2.3", "1.2.3.256", "01.2.3.4", "1.2.3.4/32", "1.2.3.4\n", "::1\n",
                                  "fe80::1%eth0", "", "host", None])
def test_ips_refused(text):
    with pytest.raises(ValidationError):
        validate.parse_ip(text)


def test_ip_of_wrong_version_refused():
    with pytest.raises(ValidationError) as error:
        validate.parse_ip("1.2.3.4", 6)
    assert "IPv6" in str(error.value)


@pytest.mark.parametrize("text,expected", [("0", 0), ("64511", 64511), ("4294967295", 4294967295), (65000, 65000)])
def test_as_numbers_accepted(text, expected):
    assert validate.parse_as_number(text) == expected


@pytest.mark.parametrize("text", ["4294967296", "99999999999999999999999", "abcde", "-1", "", "1_000",
                                  "+5", " 12", "12 ", "١٢", "1.5", True, None])
def test_as_numbers_refused(text):
    with pytest.raises(ValidationError):
        validate.parse_as_number(text)


@pytest.mark.parametrize("text,expected", [
    ("80", [80]),
    ("80,443", [80, 443]),
    ("1000:2000", ["1000:2000"]),
    ("1000-2000", ["1000:2000"]),
    ("22,80:90,443", [22, "80:90", 443]),
    ("0,65535", [0, 65535]),
    # One-port ranges become the port: Felix accepts a range only when start < end.
    ("5:5", [5]),
    ("8080:8080", [8080]),
    ("53-53", [53]),
])
def test_port_lists_accepted(text, expected):
    assert validate.parse_port_list(text) == expected


@pytest.mark.parametrize("text", ["", "65536", "80,", ",80", "90:80", "a", "80;443", "1:2:3", "-1",
                                  "8_0", "١٢", "70000:70001"])
def test_port_lists_refused(text):
    with pytest.raises(ValidationError):
        validate.parse_port_list(text)


@pytest.mark.parametrize("item,expected", [(80, 80), ("80", 80), ("1:2", "1:2"), ("1-2", "1:2"), ("80:80", 80)])
def test_port_items_from_json(item, expected):
    assert validate.parse_port_item(item) == expected


@pytest.mark.parametrize("item", [True, -1, 65536, 1.5, None, [80]])
def test_port_items_refused(item):
    with pytest.raises(ValidationError):
        validate.parse_port_item(item)


@pytest.mark.parametrize("text,expected", [("0", 0), ("8", 8), ("254", 254), (3, 3)])
def test_icmp_values_accepted(text, expected):
    assert validate.parse_icmp_value(text) == expected


@pytest.mark.parametrize("text", ["255", "-1", "x", "", "+8", "1_0", True])
def test_icmp_values_refused(text):
    with pytest.raises(ValidationError) as error:
        validate.parse_icmp_value(text, "ICMP type")
    assert "ICMP type" in str(error.value)


def test_icmp_codes_go_up_to_255():
    assert validate.parse_icmp_value("255", "ICMP code", highest=255) == 255
    with pytest.raises(ValidationError) as error:
        validate.parse_icmp_value("256", "ICMP code", highest=255)
    assert "ICMP code" in str(error.value) and "0 to 255" in str(error.value)


@pytest.mark.parametrize("text", ["244.0.0.1", "1.2.3.4", "255.255.255.255"])
def test_cluster_ids_accepted(text):
    assert validate.parse_cluster_id(text) == text


@pytest.mark.parametrize("text", ["0.0.0.0", "1.2.3", "fd00::1", "244.0.0.1/32", " 1.2.3.4", "none", "", None, 5])
def test_cluster_ids_refused(text):
    with pytest.raises(ValidationError, match="Invalid route reflector cluster ID"):
        validate.parse_cluster_id(text)
