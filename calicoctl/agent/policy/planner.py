"""What both policy dataplanes' planners do with the index's changes (pure).

``ChangesPlanner.apply_changes`` re-renders what a ``state.Changes`` touches,
in the one order both dataplanes need: the control plane's sets before the
global chains that match them, the interfaces, the profiles, and last the
tags' members. The iptables planner (``agent/policy_plan.py``) and the
nftables one (``agent/policy/nftables/plan.py``) implement the hooks.
"""


class ChangesPlanner:
    def apply_changes(self, changes):
        """Re-render what a ``state.Changes`` touches."""
        if changes.control_plane:
            self._render_control_plane_sets()
        if changes.config or changes.control_plane:
            self._render_globals()
        if changes.ifaces:
            self._render_interfaces(changes.ifaces)
        for profile in sorted(changes.profiles):
            self._render_profile(profile)
        for (tag, version), addresses in changes.tag_ips.items():
            self._update_tag_members(tag, version, addresses)

    # The hooks.
    def _render_control_plane_sets(self):
        raise NotImplementedError

    def _render_globals(self):
        raise NotImplementedError

    def _render_interfaces(self, ifaces):
        raise NotImplementedError

    def _render_profile(self, profile):
        raise NotImplementedError

    def _update_tag_members(self, tag, version, addresses):
        raise NotImplementedError
