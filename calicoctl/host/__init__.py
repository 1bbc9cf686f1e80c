"""Side-effect adapters: subprocesses, netlink, Docker, iptables, ipsets, sysctls.

Each module is the one seam to its external system and translates that
system's errors into ours (calicoctl.errors).
"""
