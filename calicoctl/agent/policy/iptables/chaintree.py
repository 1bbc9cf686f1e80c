"""A trie of iptables chains dispatching string keys (pure).

The policy dataplane dispatches packets by interface suffix and matches tag
members by address through such trees (calicoctl.agent.policy.iptables.rules, "Dispatch: a
tree, not a list" and "Tags"); this module knows nothing about what the keys
mean: the caller gives it functions that name nodes and render matches.

Also the small enums the dataplane's decisions are spelled in.
"""
import enum

LEAF_MAX = 16


class Side(enum.Enum):
    """Which address of a packet a tag rule matches (the letter is part of chain names)."""
    SRC = "s"
    DST = "d"

    def __lt__(self, other):      # sorted (tag, side) pairs keep a stable order
        return self.value < other.value


class TagKind(enum.Enum):
    """How a tag is matched: its own ipset, or a tag tree of chains."""
    SET = "set"
    TREE = "tree"


class ChainTree:
    """A trie of chains that dispatches string keys, maintained incrementally.

    Pure: ``update`` returns the chains to (re)write and the chains to
    delete; the caller programs them. A node (a key prefix) with at most
    ``leaf_max`` keys lists them; a bigger one branches on the next
    character, inlining children that hold a single key. The root always
    exists (possibly holding just ``tail``); below it, runs of single-child
    steps are skipped (a child node's prefix is the longest one its keys
    share). A change re-renders only the
    nodes on the changed keys' paths (plus any subtree a split creates), so
    its cost does not grow with the number of keys.

    :param node_name: prefix -> chain name (prefix '' is the root).
    :param match_exact: key -> match text selecting exactly that key.
    :param match_prefix: prefix -> match text selecting every key under it.
    :param target: key -> action text for that key (e.g. ``-g chain``).
    :param tail: rules appended to every node (e.g. ``("-j DROP",)``).
    """

    def __init__(self, node_name, match_exact, match_prefix, target, tail=(), leaf_max=LEAF_MAX):
        self.node_name = node_name
        self.match_exact = match_exact
        self.match_prefix = match_prefix
        self.target = target
        self.tail = tuple(tail)
        self.leaf_max = leaf_max
        self.keys = set()
        self._under = {"": set()}
        """prefix -> keys under it, for every prefix of every key."""
        self._nodes = {}
        """prefix -> rules of every node chain currently rendered."""
        self._children = {}
        """prefix -> prefixes of its child node chains."""
        self._depth = {}
        """chain name -> depth (length of its prefix) of every node chain."""
        self._next = {}
        """prefix -> the characters that follow it in some key."""

    def __len__(self):
        return len(self.keys)

    def depth(self, name):
        """Depth of node chain ``name`` (root 0), or None if not ours."""
        return self._depth.get(name)

    def update(self, added=(), removed=(), retarget=()):
        """Add and remove keys; ``retarget``: keys whose target text changed.

        Returns ``(written, deleted)``: {chain name: rules} to write (new or
        changed) and the set of chain names to delete.
        """
        affected = set()
        for key in removed:
            if key in self.keys:
                self.keys.discard(key)
                for length in range(len(key) + 1):
                    prefix = key[:length]
                    members = self._under.get(prefix)
                    if members is not None:
                        members.discard(key)
                        if not members and prefix:
                            del self._under[prefix]
                            self._next[prefix[:-1]].discard(prefix[-1])
                    affected.add(prefix)
        for key in added:
            if key not in self.keys:
                self.keys.add(key)
                for length in range(len(key) + 1):
                    prefix = key[:length]
                    members = self._under.get(prefix)
                    if members is None:
                        members = self._under[prefix] = set()
                        if prefix:
                            self._next.setdefault(prefix[:-1], set()).add(prefix[-1])
                    members.add(key)
                    affected.add(prefix)
        for key in retarget:
            if key in self.keys:
                affected.update(key[:length] for length in range(len(key) + 1))
        if not affected and self._nodes:
            return {}, set()
        written, live, orphans, deleted = {}, set(), [], set()
        self._rebuild("", affected, written, live, orphans)
        # Old children no longer referenced: drop their subtrees, except
        # nodes the new tree still uses (a compressed child may move up or
        # down a level and keep its prefix).
        for prefix in orphans:
            self._remove_stale(prefix, live, deleted)
        for prefix in deleted:
            written.pop(prefix, None)
        return ({self.node_name(p): rules for p, rules in written.items()},
                {self.node_name(p) for p in deleted})

    def _render(self, prefix):
        """(rules, child node prefixes) of the node at ``prefix``.

        Costs O(children), not O(keys under the node): a branch node reads
        only its next characters and their key counts.
        """
        members = self._under.get(prefix, ())
        rules = []
        children = []
        if len(members) <= self.leaf_max:
            for key in sorted(members):
                rules.append("%s %s" % (self.match_exact(key), self.target(key)))
        else:
            if prefix in self.keys:
                rules.append("%s %s" % (self.match_exact(prefix), self.target(prefix)))
            for char in sorted(self._next.get(prefix, ())):
                child = prefix + char
                under = self._under[child]
                if len(under) == 1:
                    only = next(iter(under))
                    rules.append("%s %s" % (self.match_exact(only), self.target(only)))
                else:
                    child = self._compress(child)
                    rules.append("%s -g %s" % (self.match_prefix(child), self.node_name(child)))
                    children.append(child)
        rules.extend(self.tail)
        return tuple(rules), children

    def _compress(self, prefix):
        """Skip single-way steps: the longest prefix shared by every key under
        ``prefix`` (so 32 hex digits of IPv6 do not cost 32 chains)."""
        while prefix not in self.keys:
            following = self._next.get(prefix)
            if not following or len(following) != 1:
                break
            prefix += next(iter(following))
        return prefix

    def _rebuild(self, prefix, affected, written, live, orphans):
        live.add(prefix)
        rules, children = self._render(prefix)
        if self._nodes.get(prefix) != rules:
            written[prefix] = rules
        self._nodes[prefix] = rules
        self._depth[self.node_name(prefix)] = len(prefix)
        for child in children:
            if child in affected or child not in self._nodes:
                self._rebuild(child, affected, written, live, orphans)
            else:
                live.add(child)       # unchanged keys under it: unchanged subtree
        old_children = self._children.get(prefix, ())
        orphans.extend(set(old_children) - set(children))
        if children:
            self._children[prefix] = tuple(children)
        else:
            self._children.pop(prefix, None)

    def _remove_stale(self, prefix, live, deleted):
        if prefix in live:
            return
        for child in self._children.pop(prefix, ()):
            self._remove_stale(child, live, deleted)
        if self._nodes.pop(prefix, None) is not None:
            self._depth.pop(self.node_name(prefix), None)
            deleted.add(prefix)
