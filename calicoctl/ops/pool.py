"""IP pools (``calicoctl pool``): add, update, remove.

What adding means given the stored pools, and every refusal, is decided by
the pure ``policy.calculate_pool_changes`` before anything is written.
"""
from dataclasses import dataclass

from calicoctl.errors import Conflict, NotFound
from calicoctl.ops import policy


@dataclass(frozen=True)
class PoolsRemoved:
    cidrs: tuple            # the pools removed, in the order given, without repeats


def list_pools(datastore):
    """Every configured pool, IPv4 first, each version by network."""
    return datastore.list_pools()


def add_pools(datastore, wanted):
    """Add the ``wanted`` pools (model.IPPool) or update the options of those
    already configured; returns the policy.PoolChange of each, in order."""
    changes = policy.calculate_pool_changes(datastore.list_pools(), wanted)
    for change in changes:
        if change.action != "same":
            datastore.write_pool(change.pool)
    return changes


def remove_pools(datastore, cidrs):
    """Remove configured pools; all or nothing while any still has an address in use."""
    configured = {pool.cidr for pool in datastore.list_pools()}
    targets = []
    for cidr in cidrs:
        text = str(cidr)
        if text not in configured:
            raise NotFound("%s is not a configured pool; nothing removed." % text)
        if text not in targets:
            targets.append(text)
    for cidr in targets:
        claimed = datastore.list_claims(cidr)
        if claimed:
            raise Conflict("Pool %s still has addresses in use (%s); nothing removed."
                           % (cidr, policy.render_short_list(claimed)))
    for cidr in targets:
        # Dropping the (empty) claims directory first fails if a claim
        # appeared since the check, which keeps the pool in place.
        if not datastore.remove_empty_claims_dir(cidr):
            raise Conflict("Pool %s got an address in use just now (%s); not removed."
                           % (cidr, policy.render_short_list(datastore.list_claims(cidr))))
        datastore.remove_pool(cidr)
    return PoolsRemoved(tuple(targets))
