"""The control-plane protection setting (``calicoctl control-plane``).

One global value in etcd (``model.ControlPlaneProtection``) says whether
workloads are kept off the control plane and which TCP ports that covers;
every host's agent enforces it (calicoctl.agent.policy.iptables.rules, "Control plane").
Unset means the defaults; a stored value that does not parse also means the
defaults (the agents keep protecting), and ``show`` says what is wrong.

Edits are compare-and-swap read-modify-writes, and a change that would not
change anything writes nothing.
"""
from dataclasses import dataclass
from typing import Optional

from calicoctl import model


@dataclass(frozen=True)
class ProtectionSetting:
    """The setting in force and where it comes from.

    :ivar setting: what the agents enforce.
    :ivar stored: etcd holds a value (else the defaults apply).
    :ivar problem: why the stored value was not usable (the defaults apply).
    """
    setting: model.ControlPlaneProtection
    stored: bool
    problem: Optional[str] = None


@dataclass(frozen=True)
class ProtectionChange:
    before: ProtectionSetting
    after: model.ControlPlaneProtection

    @property
    def changed(self):
        return self.before.problem is not None or self.before.setting != self.after


def interpret(text):
    """A stored value (or None) -> ProtectionSetting (pure)."""
    setting, problem = model.ControlPlaneProtection.from_stored(text)
    return ProtectionSetting(setting=setting, stored=text is not None, problem=problem)


def calculate_protection(current, enabled=None, ports=None):
    """``current`` with the protection switched and/or the ports replaced (pure)."""
    return model.ControlPlaneProtection(
        enabled=current.enabled if enabled is None else enabled,
        ports=current.ports if ports is None else tuple(ports))


def read_protection(datastore):
    return interpret(datastore.get_control_plane_protection())


def update_protection(datastore, enabled=None, ports=None):
    """Switch the protection (``enabled``) and/or set its ``ports``; returns the
    ProtectionChange. Nothing is written when nothing would change."""
    def decide(text):
        before = interpret(text)
        return ProtectionChange(before, calculate_protection(before.setting, enabled, ports))

    def compute(text):
        change = decide(text)
        return change.after if change.changed else None
    update = datastore.update_control_plane_protection(compute)
    # decide is pure: given the value the write started from, it is the
    # decision that was stored.
    return decide(update.old)
