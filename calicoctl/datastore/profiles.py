"""Profiles (tags and rules) in etcd."""
from calicoctl import model
from calicoctl.datastore import paths
from calicoctl.datastore.store import EtcdStore, Update
from calicoctl.errors import NotFound


class ProfileStore(EtcdStore):
    # -- profiles ---------------------------------------------------------------

    def profile_exists(self, name):
        return self._exists(paths.profile_dir(name))

    def list_profile_names(self):
        return self.kv.children(paths.PROFILES_DIR)

    def create_profile(self, profile):
        """Write a new profile; False if it already existed (nothing written)."""
        if not self.kv.create(paths.profile_rules(profile.name), profile.rules.to_json()):
            return False
        self.kv.put(paths.profile_tags(profile.name), model.render_tags_json(profile.tags))
        return True

    def get_profile_tags(self, name):
        """A profile's tags; NotFound if the profile is absent."""
        tags_text = self._read_profile(name).get(paths.profile_tags(name))
        return model.parse_tags_json(tags_text) if tags_text else ()

    def get_profile_rules(self, name):
        """A profile's rules as stored (model.StoredRules, with Felix's
        verdict); NotFound if the profile is absent."""
        return model.StoredRules.read(name, self._read_profile(name).get(paths.profile_rules(name)))

    def _read_profile(self, name):
        values = dict(self._leaves(paths.profile_dir(name)))
        if not values and not self._exists(paths.profile_dir(name)):
            raise NotFound("Profile %s not found." % name)
        return values

    def remove_profile(self, name):
        """Delete a profile; False if it did not exist."""
        return self._delete(paths.profile_dir(name), recursive=True)

    def update_profile_tags(self, name, compute):
        """CAS-update a profile's tags: compute(tuple) -> tuple. Returns an
        Update of the tags (tuples) before and after."""
        self._require_profile(name)

        def apply(old):
            tags = _tags(old)
            new_tags = compute(tags)
            return old if tuple(new_tags) == tags and old is not None else model.render_tags_json(new_tags)
        update = self.update_value(paths.profile_tags(name), apply, create=True)
        return Update(_tags(update.old), _tags(update.new))

    def update_profile_rules(self, name, compute):
        """CAS-update a profile's rules: compute(StoredRules) -> the JSON text
        to store (its ``text`` to leave it alone). Returns an Update of the
        StoredRules before and after."""
        self._require_profile(name)

        def apply(old):
            return compute(model.StoredRules.read(name, old))
        update = self.update_value(paths.profile_rules(name), apply, create=True)
        return Update(model.StoredRules.read(name, update.old), model.StoredRules.read(name, update.new))

    def _require_profile(self, name):
        if not self.profile_exists(name):
            raise NotFound("Profile %s not found." % name)


def _tags(text):
    return model.parse_tags_json(text) if text else ()
