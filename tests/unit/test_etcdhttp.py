"""The HTTP client's pure parts: reading a streamed response line by line,
and the reasons shown for a member that cannot be reached."""
import ssl

import pytest

from calicoctl.datastore.etcdhttp import Quiet, Stream, Unreachable


class Pieces:
    """Bytes as a socket would bring them in: ``read1`` returns the next
    piece, or raises what the socket raised, then nothing (the end)."""

    def __init__(self, pieces):
        self.pieces = list(pieces)

    def read1(self, size):
        piece = self.pieces.pop(0) if self.pieces else b""
        if isinstance(piece, BaseException):
            raise piece
        return piece


class Response:
    """What a Stream uses of http.client's response: for a chunked body
    (as etcd sends watches) the raw reader ``fp``, else ``read1``."""

    def __init__(self, *pieces, chunked=True):
        self.status, self.headers, self.chunked = 200, {}, chunked
        self.fp = Pieces(pieces)
        self.read1 = self.fp.read1


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


def lines(*pieces, chunked=True):
    return list(Stream(None, Response(*pieces, chunked=chunked), "http://etcd").lines())


def test_lines_are_whole_whatever_the_pieces():
    assert lines(b'{"a": 1}\n{"b"', b': 2}\n', b"\n", b'{"c"', b": 3}", b"\n", chunked=False) == [
        b'{"a": 1}', b'{"b": 2}', b'{"c": 3}']


def test_chunks_are_taken_apart_wherever_the_pieces_end():
    body = chunk(b'{"a": 1}\n') + chunk(b'{"b"') + chunk(b': 2}\n{"c": 3}\n') + b"0\r\n\r\n"
    expected = [b'{"a": 1}', b'{"b": 2}', b'{"c": 3}']
    assert lines(body) == expected                         # all at once
    for cut in range(1, len(body)):                         # in two pieces, cut anywhere
        assert lines(body[:cut], body[cut:]) == expected, cut
    assert lines(*[body[n:n + 1] for n in range(len(body))]) == expected    # a byte at a time


def test_a_stream_ends_with_the_response_or_the_connection():
    assert lines(chunk(b'{"a": 1}\n{"unfinished') + b"0\r\n\r\n") == [b'{"a": 1}']
    assert lines(chunk(b'{"a": 1}\n'), ConnectionResetError()) == [b'{"a": 1}']
    assert lines(chunk(b'{"a": 1}\n') + b"1f\r\n{\"cut") == [b'{"a": 1}']     # closed mid-chunk


def test_a_quiet_stream_raises_quiet_after_what_came():
    stream = Stream(None, Response(chunk(b'{"a": 1}\n'), TimeoutError()), "http://etcd").lines()
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
