"""Automatic address assignment: one address with 10,000 claims vs with 10.

A fresh etcd (data on tmpfs, so we time the search and not the disk), two
/16 pools: one holding 10 claims, the other 10,000 (the first addresses of
the pool, as ``container add`` users number them). Each run assigns one
address in each pool with ``calicoctl.ops.allocator.assign_address`` (the
same call ``container add <C> ipv4`` and the Docker IPAM driver make),
alternating, and releases it untimed, so the counts stay put. Target: the
median with 10,000 claims at most 1.5 times the median with 10.

For scale, the figure a scan of every claim would add (one read of the
10,000-claim directory) is shown too.
"""
import os
import shutil
import statistics
import tempfile
import threading
import time

RUNS = max(50, int(os.environ.get("BENCH_RUNS", "20")) * 10)
TARGET = 1.5
FEW, MANY = 10, 10000
FEW_POOL, MANY_POOL = "10.61.0.0/16", "10.62.0.0/16"


def _claim_addresses(pool_prefix, count):
    return ["%s.%d.%d" % (pool_prefix, (i + 1) // 256, (i + 1) % 256) for i in range(count)]


def _seed(env, pool_cidr, addresses, threads=8):
    from calicoctl.datastore import paths
    from tests.harness.etcd import make_kv

    def work(chunk):
        make_kv(env).put_many((paths.claim_key(pool_cidr, ip), "bench/docker/seed") for ip in chunk)
    workers = [threading.Thread(target=work, args=(addresses[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def run(report):
    from calicoctl import model
    from calicoctl.datastore import etcdconn
    from calicoctl.datastore.client import DatastoreClient
    from calicoctl.ops import allocator
    from tests.harness.etcd import EtcdServer

    workdir = tempfile.mkdtemp(prefix="bench-allocator-", dir="/dev/shm")
    server = EtcdServer(os.path.join(workdir, "etcd")).start()
    try:
        datastore = DatastoreClient(etcdconn.connect({"ETCD_AUTHORITY": server.authority}, timeout=30))
        pools = {FEW: model.IPPool(FEW_POOL), MANY: model.IPPool(MANY_POOL)}
        for count, pool in pools.items():
            datastore.write_pool(pool)
            _seed(server.env, pool.cidr, _claim_addresses(pool.cidr.rsplit(".", 2)[0], count))
        assert len(datastore.list_claims(MANY_POOL)) == MANY
        times = {FEW: [], MANY: []}
        scan = []
        for index in range(RUNS + 5):
            for count in (FEW, MANY) if index % 2 else (MANY, FEW):
                pool = pools[count]
                started = time.perf_counter()
                ip = allocator.assign_address(datastore, pool, pool.cidr, "bench/docker/run")
                elapsed = (time.perf_counter() - started) * 1000.0
                datastore.release_ip(pool.cidr, str(ip), owner="bench/docker/run")
                if index >= 5:
                    times[count].append(elapsed)
            if index % 10 == 0:
                started = time.perf_counter()
                datastore.list_claims(MANY_POOL)
                scan.append((time.perf_counter() - started) * 1000.0)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    few, many = statistics.median(times[FEW]), statistics.median(times[MANY])
    report("assign one address, %d claimed (median of %d)" % (MANY, RUNS), many, "ms",
           "with %d claimed" % FEW, few, target=TARGET)
    report("  one read of all %d claims (a scan)" % MANY, statistics.median(scan), "ms",
           "one assignment, %d claimed" % FEW, few)
