"""Rendering for the terminal: tables and lists. Pure functions returning text."""


def render_table(headers, rows, align="l"):
    """An ASCII box table like the reference's PrettyTable output.

    Cells may contain newlines (e.g. several addresses); each becomes its own
    line inside the row.
    """
    rows = [[("" if cell is None else str(cell)) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], max((len(line) for line in cell.split("\n")), default=0))
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells):
        padded = [(" " + c.ljust(w) + " ") if align == "l" else (" " + c.center(w) + " ")
                  for c, w in zip(cells, widths)]
        return "|" + "|".join(padded) + "|"

    out = [border, line(headers), border]
    for row in rows:
        split = [cell.split("\n") for cell in row]
        height = max(len(parts) for parts in split) if split else 1
        for i in range(height):
            out.append(line([parts[i] if i < len(parts) else "" for parts in split]))
    out.append(border)
    return "\n".join(out)


def peers_to_dict(peers, versions):
    """The ``bgp peer show`` / ``node bgp peer show`` JSON: the peers of ``versions``."""
    return {"peers": [{"ip": peer.ip, "as_num": peer.as_num, "ip_version": peer.version}
                      for peer in peers if peer.version in versions]}


def render_peer_tables(peers, versions, heading, missing):
    """What ``bgp peer show`` and ``node bgp peer show`` print, as lines: for
    each IP version a table of its peers headed ``heading(version)``, or the
    line ``missing(version)`` when it has none; each followed by a blank line."""
    lines = []
    for version in versions:
        rows = [[peer.ip, str(peer.as_num)] for peer in peers if peer.version == version]
        lines.append(render_table([heading(version), "AS Num"], rows) if rows else missing(version))
        lines.append("")
    return lines


OUTPUT_FORMATS = ("table", "json")


def parse_output_format(args):
    """The ``--output`` / ``-o`` of a show command: "table" (the default) or "json"."""
    from calicoctl.errors import ValidationError
    value = args.get("--output") or "table"
    if value not in OUTPUT_FORMATS:
        raise ValidationError("Invalid output format %r: use table or json." % value)
    return value


def render_json(document):
    """One JSON document as the ``--output=json`` commands print it (docs/json-output.md)."""
    import json
    return json.dumps(document, indent=2)
