"""IP pools and address claims in etcd."""
from calicoctl import model
from calicoctl.datastore import paths
from calicoctl.datastore.store import EtcdStore, ip_versions


class IpamStore(EtcdStore):
    # -- pools and claims -------------------------------------------------------

    def list_pools(self, version=None):
        pools = self._valid_models([paths.pools_dir(v) for v in ip_versions(version)],
                                   model.IPPool.from_json, key_filter=paths.parse_pool_key)
        import netaddr
        pools.sort(key=lambda pool: (pool.version, netaddr.IPNetwork(pool.cidr)))
        return pools

    def write_pool(self, pool):
        self.kv.put(paths.pool_key(pool.cidr), pool.to_json())

    def remove_pool(self, cidr):
        return self._delete(paths.pool_key(cidr))

    def pool_for_ip(self, ip):
        """The configured pool containing ip (a netaddr.IPAddress), or None."""
        import netaddr
        for pool in self.list_pools(ip.version):
            if ip in netaddr.IPNetwork(pool.cidr):
                return pool
        return None

    def claim_ip(self, pool_cidr, ip, owner="", ttl=None):
        """Claim ip in pool atomically; False if someone already holds it.

        ``owner`` is stored as the value (the reference stored ""; only the
        key's existence means "taken"). With ``ttl`` the claim expires (v2: a
        TTL, v3: a lease) unless ``confirm_claim`` makes it permanent: a
        command that dies half-way (etcd gone, process killed) cannot leak it
        for ever.
        """
        return self.kv.create(paths.claim_key(pool_cidr, ip), owner, ttl=ttl)

    def get_claim(self, pool_cidr, ip):
        """The owner string of a claim ("" for claims made by the reference), or None."""
        return self._get(paths.claim_key(pool_cidr, ip))

    def confirm_claim(self, pool_cidr, ip, owner):
        """Make ``owner``'s claim permanent (drop its TTL or lease); False if
        another owner holds it.

        If the claim expired meanwhile it is made again, create-only.
        """
        key = paths.claim_key(pool_cidr, ip)
        return self.kv.swap(key, owner, prev_value=owner) or self.kv.create(key, owner)

    def release_ip(self, pool_cidr, ip, owner=None, allow_anonymous=True):
        """Delete a claim; False if absent.

        With ``owner``, only a claim held by that owner (or, when
        ``allow_anonymous``, an anonymous one as the reference wrote) is
        deleted, compare-and-delete, so a retry never frees an address
        someone else claimed in between.
        """
        key = paths.claim_key(pool_cidr, ip)
        if owner is None:
            return self._delete(key)
        value = self._get(key)
        if value is None or value not in ((owner, "") if allow_anonymous else (owner,)):
            return False
        return self.kv.delete(key, prev_value=value)

    def list_claim_pools(self, version):
        """CIDRs of every pool that has an assignment directory (claims may
        outlive their pool's definition)."""
        directory = paths.assignments_dir(version)
        cidrs = []
        for name in self.kv.children(directory):
            cidr = paths.parse_claims_dir(directory.rstrip("/") + "/" + name)
            if cidr is not None:
                cidrs.append(cidr)
        return cidrs

    def remove_empty_claims_dir(self, pool_cidr):
        """Delete a pool's claims directory if it is empty (or absent).

        False when it still holds claims: v2 refuses to delete a non-empty
        directory without ``recursive``, which makes this safe against a
        claim made after the caller looked (v3 has no directory to delete).
        """
        return self.kv.delete_empty_dir(paths.claims_dir(pool_cidr))

    def list_claims(self, pool_cidr):
        return sorted(key.rsplit("/", 1)[-1] for key, _ in self._leaves(paths.claims_dir(pool_cidr)))

    def list_claim_owners(self, pool_cidr):
        """{ip: owner} of every claim in a pool's directory, in one read."""
        return {key.rsplit("/", 1)[-1]: value or "" for key, value in self._leaves(paths.claims_dir(pool_cidr))}

    def release_claims(self, ips):
        """Delete the claim of each IP in ``ips``, in whatever pool it sits.

        Scans the claim trees rather than the current pools, so claims in a
        pool removed since are released too. Returns the (pool, ip) released.
        """
        import netaddr
        wanted = {str(netaddr.IPAddress(ip)) for ip in ips}
        released = []
        for version in (4, 6):
            for key, _ in self._leaves(paths.assignments_dir(version)):
                parsed = paths.parse_claim_key(key)
                if parsed is None:
                    continue
                try:
                    ip = str(netaddr.IPAddress(parsed[1]))
                except (netaddr.AddrFormatError, ValueError):
                    continue
                if ip in wanted and self._delete(key):
                    released.append((parsed[0], ip))
        return sorted(released)
