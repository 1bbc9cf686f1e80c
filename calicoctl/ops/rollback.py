"""Undo actions for a workflow that must leave nothing half-done."""
from calicoctl.errors import CalicoError


class Rollback:
    """Undo actions, run newest first when the workflow fails."""

    def __init__(self):
        self._actions = []

    def push(self, description, action):
        self._actions.append((description, action))

    def run(self):
        """Run every undo; return a description of each one that failed."""
        failures = []
        while self._actions:
            description, action = self._actions.pop()
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - keep undoing the rest regardless
                failures.append("could not %s: %s" % (description, str(exc).rstrip(".")))
        return failures

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, _tb):
        if exc_type is None:
            self._actions = []
            return False
        failures = self.run()
        if failures and isinstance(exc, CalicoError):
            exc.args = ("%s (%s)" % (str(exc).rstrip("."), "; ".join(failures)),)
        return False
