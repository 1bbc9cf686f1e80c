"""Programs the desired ipsets (plan.PolicyPlanner.sets) into the kernel.

Two steps around the chain writes: ``write`` (before them) creates sets and
adds and removes members, so no rule ever names a set that is not there;
``destroy`` (after the chain deletions) removes sets no longer desired,
except those old rules kept behind a prepended RETURN still match on (they
wait; ticks retry). A set the kernel refuses to create or fill, or one that
exists with another type, demotes its tag to a tag tree (the planner
re-renders the profiles using it).

Both steps go to the kernel over netlink from this process
(calicoctl.host.ipsets), so a cycle in which only members change (other
hosts' endpoints coming and going) starts no process at all.
"""
import logging

from calicoctl.agent.policy.iptables import rules
from calicoctl.agent.policy.iptables.plan import SET_TYPE
from calicoctl.errors import CalicoError
from calicoctl.host import ipsets as ipsets_mod

LOG = logging.getLogger(__name__)

MAXELEM = 1048576
"""Capacity of our sets: a tag may hold every address of a large cluster."""


def diff_members(want, have, check=None):
    """(members to add, members to delete), sorted (pure).

    :param check: the members that may differ, or None for all of them.
    """
    candidates = (want | have) if check is None else check
    adds, dels = [], []
    for member in sorted(candidates):
        wanted, present = member in want, member in have
        if wanted and not present:
            adds.append(member)
        elif present and not wanted:
            dels.append(member)
    return adds, dels


class SetReconciler:
    """What ipsets of ours the kernel has, and the batches that change them.

    :param ipsets: an ``Ipsets`` adapter (or anything with read/write/destroy).
    """

    def __init__(self, ipsets):
        self.ipsets = ipsets
        self.programmed = {}
        """set name -> IpsetInfo as far as we know."""

    def read_kernel(self):
        try:
            self.programmed = self.ipsets.read(rules.is_owned_ipset)
        except CalicoError as exc:
            LOG.error("Cannot read ipsets (%s); assuming none of ours exist", exc)
            self.programmed = {}

    def write(self, planner):
        """Create, fill and trim the planner's dirty sets; returns the sets to
        destroy once no chain refers to them."""
        pending = planner.take_sets_dirty()
        writes, destroys = [], []
        for name, members in sorted(pending.items()):
            want = planner.sets.get(name)
            have = self.programmed.get(name)
            if want is None:
                if have is not None:
                    destroys.append(name)
                continue
            if have is not None and (have.set_type != SET_TYPE or have.family != want.family):
                LOG.warning("ipset %s exists with type %s %s; matching its tag with chains instead",
                            name, have.set_type, have.family)
                planner.demote_tag_for_set(name)
                continue
            if have is None:
                adds, dels = sorted(want.members), []
            else:
                adds, dels = diff_members(want.members, have.members, members)
            if have is None or adds or dels:
                writes.append(ipsets_mod.SetWrite(name, SET_TYPE, want.family, adds, dels,
                                                  create=have is None, maxelem=MAXELEM))
        failed = self.ipsets.write(writes) if writes else {}
        retry = []
        for write in writes:
            name = write.name
            if name in failed:
                self.programmed.pop(name, None)
                planner.demote_tag_for_set(name)
                if name in planner.sets:       # not a tag's: no chains can stand in
                    retry.append(name)
                continue
            info = self.programmed.get(name)
            if info is None:
                info = self.programmed[name] = ipsets_mod.IpsetInfo(name, SET_TYPE, write.family, set())
            info.members.update(write.adds)
            info.members.difference_update(write.dels)
        # Demotions above queued their sets for removal.
        for name in planner.sets_dirty:
            if name not in planner.sets and name in self.programmed:
                destroys.append(name)
        planner.sets_dirty = {name: None for name in retry}
        return destroys

    def destroy(self, planner, names, held):
        """Destroy ``names`` except those in ``held`` (still matched on: they
        go back to the planner's dirty sets, for a later try)."""
        for name in names:
            if name in held:
                planner.sets_dirty[name] = None
        names = [name for name in names if name not in held]
        if names:
            failed = self.ipsets.destroy(names)
            for name in names:
                if name in failed:
                    LOG.error("ipset %s: %s", name, failed[name])
                else:
                    self.programmed.pop(name, None)
