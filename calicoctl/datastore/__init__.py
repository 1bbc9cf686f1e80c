"""etcd access: the key layout (paths), the connection (etcdconn) and typed reads/writes (client)."""
