"""What the agent's EtcdWatcher emits, queued for a test to read in order."""
import queue
import threading
import time

from calicoctl.agent.watcher import Update


class WatchEvents:
    """An EtcdWatcher's ``emit``: remembers every Snapshot, Update and Lost.
    ``hold.clear()`` makes it block on the next Update (as a busy agent
    would) until ``hold.set()``."""

    def __init__(self):
        self.events = queue.Queue()
        self.hold = threading.Event()
        self.hold.set()

    def __call__(self, item):
        self.events.put(item)
        if isinstance(item, Update):
            self.hold.wait(30)

    def next(self, kind, timeout=10):
        """The next event of ``kind`` (a class or tuple of classes), skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            item = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            if isinstance(item, kind):
                return item
