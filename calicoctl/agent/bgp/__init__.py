"""BGP for the node: BIRD 2, configured from etcd and supervised.

- ``bird_config``: pure, the etcd leaves -> BIRD's configuration text;
- ``bird``: the component (``BirdManager``) that writes it, starts BIRD,
  reloads and restarts it.
"""
