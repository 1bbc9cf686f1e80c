"""Calico container networking for Docker hosts.

Importing the package has no side effects: clients, environment and
configuration are built by the entry points (``calicoctl.cli`` and
``calicoctl.agent``).
"""

__version__ = "0.6.0"
