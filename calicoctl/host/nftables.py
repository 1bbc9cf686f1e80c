"""nftables through libnftables, in the calling process.

The library behind Debian's ``nft`` tool (``libnftables.so.1``, package
``libnftables1``, which ``nftables`` depends on) takes the same command text
as ``nft -f``: every ``run`` is one netlink batch, so one atomic kernel
transaction (all of it applies, or none of it). Calling it through ctypes
costs no process: a change of a few set elements takes well under a
millisecond, where running ``nft`` takes several (docs/scale.md).

Knows nothing of Calico: ``run`` applies commands, ``list_json`` reads
something back as nft's JSON, ``probe`` says whether this host can use
nftables at all.

``netns`` (a path such as ``/proc/<pid>/ns/net``) makes every command act in
that network namespace: the library's netlink socket is opened by a thread
that has entered it (tests use that; the agent runs inside its host).
"""
import ctypes
import json
import os
import threading

from calicoctl.errors import HostNetworkError

LIBRARY = "libnftables.so.1"
OUTPUT_HANDLE = 1 << 3
OUTPUT_JSON = 1 << 4
CLONE_NEWNET = 0x40000000


class NftError(HostNetworkError):
    """The kernel or the library refused a transaction; nothing of it applied."""

    def __init__(self, message, commands=""):
        super().__init__(message)
        self.commands = commands


def _load():
    library = ctypes.CDLL(LIBRARY, use_errno=True)
    library.nft_ctx_new.restype = ctypes.c_void_p
    library.nft_ctx_new.argtypes = [ctypes.c_uint32]
    library.nft_ctx_free.argtypes = [ctypes.c_void_p]
    library.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    library.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    library.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
    library.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
    library.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    library.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    library.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    library.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    library.nft_run_cmd_from_buffer.restype = ctypes.c_int
    library.nft_ctx_set_dry_run.argtypes = [ctypes.c_void_p, ctypes.c_bool]
    return library


class Nftables:
    """One libnftables context (not thread-safe: use it from one thread)."""

    def __init__(self, netns=None):
        try:
            self._lib = _load()
        except OSError as exc:
            raise HostNetworkError("Cannot load %s (install nftables): %s" % (LIBRARY, exc)) from None
        self._ctx = _in_netns(netns, lambda: self._lib.nft_ctx_new(0)) if netns else self._lib.nft_ctx_new(0)
        if not self._ctx:
            raise HostNetworkError("libnftables could not make a context")
        self._lib.nft_ctx_buffer_output(self._ctx)
        self._lib.nft_ctx_buffer_error(self._ctx)

    def close(self):
        if self._ctx:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None

    def run(self, commands, flags=0):
        """Apply ``commands`` (nft's language, one per line) in one transaction;
        returns what nft printed. Raises NftError, naming the refused command."""
        self._lib.nft_ctx_output_set_flags(self._ctx, flags)
        status = self._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode())
        output = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode(errors="replace")
        errors = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
        if status != 0:
            raise NftError("nftables refused the change: %s" % (_first_error(errors) or "status %d" % status),
                           commands)
        return output

    def check(self, commands):
        """Run ``commands`` as a dry run (checked, by the kernel too, never
        applied). Raises NftError as ``run`` would."""
        self._lib.nft_ctx_set_dry_run(self._ctx, True)
        try:
            self.run(commands)
        finally:
            self._lib.nft_ctx_set_dry_run(self._ctx, False)

    def list_json(self, what):
        """``list <what>`` (e.g. ``table inet calico``) as nft's JSON list of
        objects; None if it does not exist."""
        try:
            text = self.run("list %s" % what, flags=OUTPUT_JSON | OUTPUT_HANDLE)
        except NftError as exc:
            if "No such file or directory" in str(exc):
                return None
            raise
        return json.loads(text).get("nftables", []) if text.strip() else []


class LazyNftables:
    """An Nftables made on first use (or the one given), for a component
    that may never need one; ``close`` frees it (the next use makes another)."""

    def __init__(self, given=None):
        self._nft = given

    def get(self):
        if self._nft is None:
            self._nft = Nftables()
        return self._nft

    def close(self):
        if self._nft is not None:
            self._nft.close()
            self._nft = None


def _first_error(text):
    """The first ``Error:`` line of libnftables' error output and the command under it."""
    lines = [line for line in text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith("Error:"):
            return " ".join([line[len("Error:"):].strip()] + lines[index + 1:index + 2])
    return " ".join(lines[:2])


def _in_netns(path, make):
    """``make()`` on a thread that has entered the network namespace at ``path``."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    result = {}

    def enter_and_make():
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                result["error"] = OSError(ctypes.get_errno(), "setns %s" % path)
                return
            result["value"] = make()
        finally:
            os.close(fd)
    thread = threading.Thread(target=enter_and_make, name="nft-netns")
    thread.start()
    thread.join()
    if "error" in result:
        raise HostNetworkError("Cannot enter %s: %s" % (path, result["error"]))
    return result["value"]


def probe():
    """None if this host can program nftables from this process (the library
    loads and the kernel answers a listing), else why not."""
    try:
        nft = Nftables()
    except HostNetworkError as exc:
        return str(exc)
    try:
        nft.run("list tables")
    except NftError as exc:
        return "the kernel has no nf_tables: %s" % exc
    finally:
        nft.close()
    return None
