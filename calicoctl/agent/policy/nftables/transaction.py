"""Pure: the nft commands that take the table from what is programmed to what is wanted.

A transaction is a list of ``Unit``s, each the commands for one object (a
set made or filled, a chain's rules written, a chain or set removed), in an
order the kernel accepts within one batch: sets and their new elements,
new chains (empty, so chains may refer to each other in any order), chain
rules, removed chains (flushed, then deleted), removed elements, removed
sets. Nothing is referred to before it exists, nor removed while referred to.

The dataplane sends all units as one batch (one atomic kernel transaction).
Should the kernel refuse it, units can be sent in smaller groups in the
same order (``split``) to find the one at fault, and ``apply_unit`` records
in the programmed table what a unit that went through changed.

``full_table`` writes a whole table in one batch: at start, and as a
periodic repair, it replaces whatever is there atomically (established
flows are accepted by the new rules as by the old).
"""
from dataclasses import dataclass

from calicoctl.agent.policy.nftables import rules
from calicoctl.agent.policy.nftables.plan import Table

# Phases, in batch order.
ADD_SET, ADD_ELEMENTS, ADD_CHAIN, WRITE_CHAIN, FLUSH_CHAIN, DELETE_CHAIN, DELETE_ELEMENTS, DELETE_SET = range(8)


@dataclass(frozen=True)
class Unit:
    phase: int
    name: str
    """The chain or set the unit is about."""
    commands: tuple
    payload: object = None
    """What ``apply_unit`` records: the chain's rules, or the elements."""


def _chain_header(name, hook):
    return "add chain %s %s%s" % (rules.TABLE_REF, name, " { %s }" % hook if hook else "")


def _element_command(verb, name, elements):
    return "%s element %s %s { %s }" % (verb, rules.TABLE_REF, name, ", ".join(sorted(elements)))


def chain_commands(name, chain_rules, flush):
    commands = ["flush chain %s %s" % (rules.TABLE_REF, name)] if flush else []
    commands += ["add rule %s %s %s" % (rules.TABLE_REF, name, rule) for rule in chain_rules]
    return tuple(commands)


def plan_units(desired, programmed, dirty_chains, dirty_sets):
    """The units that bring ``programmed`` to ``desired`` for the dirty
    chains and sets (``dirty_sets``: name -> elements to check, or None)."""
    units = []
    for name, candidates in sorted(dirty_sets.items()):
        spec = desired.sets.get(name)
        if spec is None:
            if name in programmed.sets:
                units.append(Unit(DELETE_SET, name, ("delete set %s %s" % (rules.TABLE_REF, name),)))
            continue
        want = desired.elements.get(name, set())
        if name not in programmed.sets:
            commands = ["add set %s %s { %s }" % (rules.TABLE_REF, name, spec)]
            if want:
                commands.append(_element_command("add", name, want))
            units.append(Unit(ADD_SET, name, tuple(commands), frozenset(want)))
            continue
        have = programmed.elements.get(name, set())
        check = (want | have) if candidates is None else candidates
        adds = {element for element in check if element in want and element not in have}
        dels = {element for element in check if element in have and element not in want}
        if adds:
            units.append(Unit(ADD_ELEMENTS, name, (_element_command("add", name, adds),), frozenset(adds)))
        if dels:
            units.append(Unit(DELETE_ELEMENTS, name, (_element_command("delete", name, dels),), frozenset(dels)))
    for name in sorted(dirty_chains):
        want = desired.chains.get(name)
        have = programmed.chains.get(name)
        if want is None:
            if have is not None:
                units.append(Unit(FLUSH_CHAIN, name, ("flush chain %s %s" % (rules.TABLE_REF, name),)))
                units.append(Unit(DELETE_CHAIN, name, ("delete chain %s %s" % (rules.TABLE_REF, name),)))
            continue
        if have is None:
            units.append(Unit(ADD_CHAIN, name, (_chain_header(name, desired.hooks.get(name)),)))
        if have != want and (want or have):
            units.append(Unit(WRITE_CHAIN, name, chain_commands(name, want, flush=bool(have)), want))
    return sorted(units, key=lambda unit: unit.phase)


def render(units):
    return "\n".join(command for unit in units for command in unit.commands) + "\n"


def apply_unit(programmed, unit):
    """Record in ``programmed`` what ``unit`` did (it went through)."""
    if unit.phase == ADD_SET:
        programmed.sets[unit.name] = True
        programmed.elements[unit.name] = set(unit.payload)
    elif unit.phase == ADD_ELEMENTS:
        programmed.elements[unit.name] |= unit.payload
    elif unit.phase == DELETE_ELEMENTS:
        programmed.elements[unit.name] -= unit.payload
    elif unit.phase == DELETE_SET:
        programmed.sets.pop(unit.name, None)
        programmed.elements.pop(unit.name, None)
    elif unit.phase == ADD_CHAIN:
        programmed.chains.setdefault(unit.name, ())
    elif unit.phase == WRITE_CHAIN:
        programmed.chains[unit.name] = unit.payload
    elif unit.phase == FLUSH_CHAIN:
        programmed.chains[unit.name] = ()
    elif unit.phase == DELETE_CHAIN:
        programmed.chains.pop(unit.name, None)


def full_table(desired):
    """Commands that replace the whole table with ``desired`` in one batch
    (``add`` before ``delete``: deleting a table that is not there fails)."""
    ref = rules.TABLE_REF
    commands = ["add table %s" % ref, "delete table %s" % ref, "add table %s" % ref]
    for name, spec in sorted(desired.sets.items()):
        commands.append("add set %s %s { %s }" % (ref, name, spec))
        if desired.elements.get(name):
            commands.append(_element_command("add", name, desired.elements[name]))
    for name in sorted(desired.chains):
        commands.append(_chain_header(name, desired.hooks.get(name)))
    for name, chain_rules in sorted(desired.chains.items()):
        commands.extend(chain_commands(name, chain_rules, flush=False))
    return "\n".join(commands) + "\n"


def copy_table(table):
    """What is programmed after ``full_table(table)`` went through."""
    return Table(chains=dict(table.chains), hooks=dict(table.hooks), sets=dict(table.sets),
                 elements={name: set(members) for name, members in table.elements.items()})


UNKNOWN_RULES = ("<as the kernel has it>",)
"""The rules of a chain read back from the kernel: never what is wanted, so
the chain is written whole."""


def read_table(objects):
    """The programmed Table from nft's JSON listing of the table (a list of
    objects): chains (their rules unknown), sets and their elements in the
    form ``rules`` writes them."""
    table = Table()
    for item in objects:
        if "chain" in item:
            table.chains[item["chain"]["name"]] = UNKNOWN_RULES
        elif "set" in item:
            found = item["set"]
            types = found["type"] if isinstance(found["type"], list) else [found["type"]]
            table.sets[found["name"]] = "type %s;" % " . ".join(types)
            table.elements[found["name"]] = {_element_text(element, types) for element in found.get("elem", ())}
    return table


def _element_text(element, types):
    if isinstance(element, dict) and "elem" in element:
        element = element["elem"]["val"]
    parts = element["concat"] if isinstance(element, dict) and "concat" in element else [element]
    return " . ".join(rules.quote(part) if kind in ("ifname", "string") else str(part)
                      for part, kind in zip(parts, types))
