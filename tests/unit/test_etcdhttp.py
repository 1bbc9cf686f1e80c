"""The HTTP client's pure parts: reading a streamed response line by line,
and the reasons shown for a member that cannot be reached."""
import ssl

import pytest

from calicoctl.datastore.etcdhttp import Quiet, Stream, Unreachable


class Response:
    """What http.client's response gives a Stream: ``read1`` returns the next
    piece etcd sent, or raises what the socket raised."""

    def __init__(self, *pieces):
        self.status, self.headers = 200, {}
        self.pieces = list(pieces)

    def read1(self, size):
        piece = self.pieces.pop(0) if self.pieces else b""
        if isinstance(piece, BaseException):
            raise piece
        return piece


def lines(*pieces):
    return list(Stream(None, Response(*pieces), "http://etcd").lines())


def test_lines_are_whole_whatever_the_pieces():
    assert lines(b'{"a": 1}\n{"b"', b': 2}\n', b"\n", b'{"c"', b": 3}", b"\n") == [
        b'{"a": 1}', b'{"b": 2}', b'{"c": 3}']


def test_a_stream_ends_with_the_response_or_the_connection():
    assert lines(b'{"a": 1}\n{"unfinished') == [b'{"a": 1}']
    assert lines(b'{"a": 1}\n', ConnectionResetError()) == [b'{"a": 1}']


def test_a_quiet_stream_raises_quiet_after_what_came():
    stream = Stream(None, Response(b'{"a": 1}\n', TimeoutError()), "http://etcd").lines()
    assert next(stream) == b'{"a": 1}'
    with pytest.raises(Quiet):
        next(stream)


@pytest.mark.parametrize("cause, hint", [
    (ConnectionRefusedError(111, "Connection refused"), ""),
    (TimeoutError("timed out"), ""),
    (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "TLS handshake failed"),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), "TLS handshake failed"),
])
def test_unreachable_hints_at_tls_only_when_tls_failed(cause, hint):
    text = Unreachable(cause).hint
    assert (hint in text) if hint else text == ""
