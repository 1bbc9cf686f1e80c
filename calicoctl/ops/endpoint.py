"""Endpoints and their profile lists (``calicoctl endpoint``).

``filters`` narrow the endpoints down as the datastore's ``list_endpoints``
keywords do (``hostname``, ``orchestrator_id``, ``workload_id``). Profile
list edits are compare-and-swap updates of the endpoint; the decision is the
pure ``policy.calculate_profiles_*`` for the action, and the result is that
decision made from the endpoint the write started from (``Update.old``).
"""
from dataclasses import dataclass, replace

from calicoctl.errors import NotFound
from calicoctl.ops import policy

# Edits of an endpoint's profile list, by the command word that asks for them.
APPEND, REMOVE, SET = "append", "remove", "set"


@dataclass(frozen=True)
class ProfilesEdit:
    """What an append/remove/set did to one endpoint's profile list."""
    endpoint_id: str
    action: str                     # APPEND, REMOVE or SET
    change: policy.ProfileListChange


def list_endpoints(datastore, filters, endpoint_id=None):
    return datastore.list_endpoints(endpoint_id=endpoint_id, **filters)


def read_profiles(datastore, endpoint_id, filters):
    """The endpoint's profile IDs in evaluation order (NotFound / Conflict if
    the filters do not pick exactly one endpoint)."""
    return datastore.get_endpoint(endpoint_id, **filters).profile_ids


def edit_profiles(datastore, endpoint_id, filters, action, names):
    """Apply ``action`` with the profile ``names`` (checked, without repeats)
    to the endpoint's list. Every named profile must exist."""
    for name in names:
        if not datastore.profile_exists(name):
            raise NotFound("Profile %s not found." % name)
    endpoint = datastore.get_endpoint(endpoint_id, **filters)

    def decide(current):
        if action == APPEND:
            return policy.calculate_profiles_append(current.profile_ids, names)
        if action == REMOVE:
            return policy.calculate_profiles_remove(current.profile_ids, names, endpoint_id)
        return policy.calculate_profiles_set(current.profile_ids, names)

    def compute(current):
        change = decide(current)
        return replace(current, profile_ids=change.profile_ids) if change.changed else current
    update = datastore.update_endpoint(endpoint.key, compute)
    return ProfilesEdit(endpoint_id, action, decide(update.old))
