# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The page's Figure 7, "Firewall ports for the perimeter network", generated from the policy.

Two steps, kept apart so a test can hold the picture to the policy:

* :func:`build_graph` turns the policy of one site into data: nodes (the Internet, the external
  firewall(s), each perimeter server or array with its roles, VIPs and member addresses, the
  internal firewall(s), the Director / next hop or "any internal host") and one edge per rule,
  in the direction of the first packet, labelled with the figure-mapping number, protocol and
  ports;
* :func:`to_dot` writes that data as Graphviz DOT source (no dependency). Rendering the source
  to SVG/PNG is the module ``ocs.edge_firewall.diagram_render`` (needs Graphviz ``dot``).

Layout is left to Graphviz (no coordinates): zones are ranked left to right, Internet ->
external firewall -> perimeter -> internal firewall -> internal network; an edge whose first
packet goes right to left is drawn with its arrow head at the left end (``dir=back``), so the
ranks stay in order and every arrow still points the way the connection is opened.
"""
from __future__ import annotations

ROLE_NAMES = {"reverse_proxy": "Reverse proxy", "access_edge": "Access Edge",
              "web_conferencing_edge": "Web Conferencing Edge", "av_edge": "A/V Edge"}
ROLE_COLORS = {"reverse_proxy": "#1b7837", "access_edge": "#2166ac",
               "web_conferencing_edge": "#b35806", "av_edge": "#762a83"}
ZONE_ORDER = ("internet", "external_firewall", "perimeter", "internal_firewall", "internal")
INTERNET = "internet"


def _local_initiates(rule):
    """Who opens the connection: the perimeter server (True) or the remote side (as policy.py)."""
    return (rule["firewall"], rule["direction"]) in (("internal", "inbound"), ("external", "outbound"))


def _ports(spec):
    return "any" if spec is None else ",".join(spec)


def _node_id(kind, name):
    return "%s_%s" % (kind, "".join(c if c.isalnum() else "_" for c in name))


# ----------------------------------------------------------------------------- nodes

def _server_lines(name, srv):
    """Roles, addresses per side (per role when they differ), host firewall."""
    lines = [", ".join(ROLE_NAMES[r] for r in srv["roles"])]
    for side in ("internal", "external"):
        addrs = srv.get(side) or {}
        if len(set(addrs.values())) == 1:
            lines.append("%s %s" % (side, next(iter(addrs.values()))))
        else:
            lines += ["%s %s (%s)" % (side, a, ROLE_NAMES[r]) for r, a in sorted(addrs.items())]
    if srv.get("host_firewall"):
        lines.append("host firewall: %s" % srv["host_firewall"])
    return lines


def _member_line(name, srv):
    internal = "/".join(sorted(set((srv.get("internal") or {}).values())))
    external = "/".join(sorted(set((srv.get("external") or {}).values())))
    mark = " [host firewall: %s]" % srv["host_firewall"] if srv.get("host_firewall") else ""
    return "%s: internal %s, external %s%s" % (name, internal, external, mark)


def _perimeter_nodes(dep, site):
    """One node per array (VIPs, members) and per server outside an array; address -> node."""
    servers = {n: s for n, s in sorted((dep.get("servers") or {}).items()) if s["site"] == site}
    nodes, owner = [], {}
    for aname, arr in sorted((dep.get("arrays") or {}).items()):
        members = {n: s for n, s in servers.items() if s.get("array") == aname}
        if not members:
            continue
        nid = _node_id("array", aname)
        lines = ["%s array" % ROLE_NAMES[arr["role"]],
                 "VIP internal %s, external %s" % (arr.get("internal_vip") or "none", arr.get("external_vip") or "none")]
        lines += [_member_line(n, s) for n, s in members.items()]
        addrs = [a for a in (arr.get("internal_vip"), arr.get("external_vip")) if a]
        for s in members.values():
            addrs += list((s.get("internal") or {}).values()) + list((s.get("external") or {}).values())
        nodes.append({"id": nid, "zone": "perimeter", "kind": "array", "title": aname, "lines": lines,
                      "roles": [arr["role"]], "addresses": sorted(set(addrs)), "servers": sorted(members),
                      "host_firewalls": {n: s["host_firewall"] for n, s in members.items() if s.get("host_firewall")}})
    for name, srv in servers.items():
        if srv.get("array") and any(n["title"] == srv["array"] for n in nodes):
            continue
        addrs = list((srv.get("internal") or {}).values()) + list((srv.get("external") or {}).values())
        nodes.append({"id": _node_id("server", name), "zone": "perimeter", "kind": "server", "title": name,
                      "lines": _server_lines(name, srv), "roles": list(srv["roles"]),
                      "addresses": sorted(set(addrs)), "servers": [name],
                      "host_firewalls": {name: srv["host_firewall"]} if srv.get("host_firewall") else {}})
    for node in nodes:
        for a in node["addresses"]:
            owner[a] = node["id"]
    return nodes, owner


def _firewall_nodes(policy, site):
    nodes = []
    for name, fw in sorted(policy["firewalls"].items()):
        if fw["mode"] == "network" and fw["site"] == site:
            nodes.append({"id": _node_id("fw", name), "zone": "%s_firewall" % fw["side"], "kind": "firewall",
                          "title": name, "lines": ["%s firewall" % fw["side"], fw["platform"]],
                          "side": fw["side"], "addresses": [], "servers": [], "host_firewalls": {}})
    return nodes


def _internal_nodes(dep):
    nodes = []
    for key, title in (("director", "Director"), ("next_hop", "Next hop")):
        if dep.get(key):
            members = dep.get("director_members") or [] if key == "director" else []
            lines = [dep[key]] + (["pool members: %s" % ", ".join(members)] if members else [])
            nodes.append({"id": key, "zone": "internal", "kind": key, "title": title, "lines": lines,
                          "addresses": [dep[key]] + list(members), "servers": [], "host_firewalls": {}})
    return nodes


def _other_node(zone, addresses):
    """A node for addresses no server, array or Director holds (opt-in extra and note rules):
    "any" or the addresses the rule names, on the internal side or in the perimeter."""
    key = "any" if addresses is None else "_".join(addresses)
    title = {"internal": "Internal network", "perimeter": "Other perimeter addresses"}[zone]
    return {"id": _node_id("%s_other" % zone, key), "zone": zone, "kind": "any", "title": title,
            "lines": ["any address" if addresses is None else ", ".join(addresses)],
            "addresses": list(addresses or []), "servers": [], "host_firewalls": {}}


# ----------------------------------------------------------------------------- edges

def _remote_node(rule, internal):
    """The Internet, the Director / next hop (with the pool members), or another internal node."""
    if rule["firewall"] == "external":
        return INTERNET, None
    remote = rule["remote_addresses"]
    for node in internal:
        if remote and set(remote) <= set(node["addresses"]):
            return node["id"], None
    other = _other_node("internal", remote)
    return other["id"], other


def _tag(rule):
    """The label's first word: the figure-mapping number, or what an opt-in rule is."""
    if rule.get("figure") is not None:
        return "%d" % rule["figure"]
    return "note" if rule.get("note") else "extra"


def _edge(rule, local_node, remote_node, via):
    local_first = _local_initiates(rule)
    sport = rule["local_ports"] if local_first else rule["remote_ports"]
    dport = rule["remote_ports"] if local_first else rule["local_ports"]
    label = "%s: %s %s" % (_tag(rule), rule["protocol"].upper(), _ports(dport))
    if sport is not None:
        label += " from %s" % _ports(sport)
    return {"rule": rule["id"], "table": rule["table"], "figure": rule["figure"], "service": rule["service"],
            "role": rule["server_role"], "protocol": rule["protocol"], "sport": sport, "dport": dport,
            "src": local_node if local_first else remote_node, "dst": remote_node if local_first else local_node,
            "via": via, "label": label, "tag": _tag(rule)}


def _local_nodes(rule, owner):
    """The perimeter nodes holding the rule's local addresses (one edge each); addresses no
    server holds (opt-in rules) go to an "other perimeter addresses" node."""
    held = sorted({owner[a] for a in rule["local_addresses"] or [] if a in owner})
    loose = [a for a in rule["local_addresses"] or [] if a not in owner]
    if loose or rule["local_addresses"] is None:
        other = _other_node("perimeter", loose or None)
        return held + [other["id"]], other
    return held, None


def build_graph(policy, site):
    """The diagram of one site as data: {"site", "kind", "topology", "nodes", "edges"}."""
    dep = policy.get("deployment") or {}
    perimeter, owner = _perimeter_nodes(dep, site)
    firewalls = _firewall_nodes(policy, site)
    internal = _internal_nodes(dep)
    extra, edges = {}, []
    for rule in policy["rules"]:
        if rule["site"] != site:
            continue
        via = [n["id"] for n in firewalls if n["side"] == rule["firewall"]]
        remote, other = _remote_node(rule, internal)
        locals_, other_local = _local_nodes(rule, owner)
        for node in (other, other_local):
            if node:
                extra.setdefault(node["id"], node)
        edges += [_edge(rule, node, remote, via) for node in locals_]
    perimeter += [n for n in extra.values() if n["zone"] == "perimeter"]
    internal += [n for n in extra.values() if n["zone"] == "internal"]
    nodes = [{"id": INTERNET, "zone": "internet", "kind": "internet", "title": "Internet", "lines": ["any address"],
              "addresses": [], "servers": [], "host_firewalls": {}}] + firewalls + perimeter + internal
    return {"site": site, "kind": (dep.get("sites") or {}).get(site), "topology": policy["topology"],
            "nodes": nodes, "edges": edges}


# ----------------------------------------------------------------------------- DOT source

def _q(text):
    """A DOT double-quoted string."""
    return '"%s"' % str(text).replace("\\", "\\\\").replace('"', '\\"')


def _html(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _node_dot(n):
    """An HTML-like label: bold title, one line per fact; host firewalls in red."""
    rows = ["<B>%s</B>" % _html(n["title"])]
    for line in n["lines"]:
        color = ' COLOR="#b2182b"' if "host firewall" in line else ""
        rows.append('<FONT POINT-SIZE="10"%s>%s</FONT>' % (color, _html(line)))
    shape = {"firewall": 'shape=box, style="filled,bold", fillcolor="#fddbc7", height=2.2',
             "internet": 'shape=ellipse, style=filled, fillcolor="#e0e0e0"',
             "any": 'shape=ellipse, style=filled, fillcolor="#e0e0e0"'}.get(
        n["kind"], 'shape=box, style="rounded,filled", fillcolor="#f7f7f7"')
    if n.get("host_firewalls"):
        shape += ", peripheries=2, color=\"#b2182b\""
    return "    %s [label=<%s>, %s];" % (n["id"], "<BR/>".join(rows), shape)


def _edge_dot(e, zone_of):
    """One flow as two segments through its firewall (outer side labelled, the perimeter side
    carries the rule id as a small label); DOT edges always point down the ranks (left to
    right), so a right-to-left flow gets dir=back on both segments."""
    forward = ZONE_ORDER.index(zone_of[e["src"]]) <= ZONE_ORDER.index(zone_of[e["dst"]])
    left, right = (e["src"], e["dst"]) if forward else (e["dst"], e["src"])
    color = _q(ROLE_COLORS.get(e["role"], "black"))
    common = ["color=%s" % color, "fontcolor=%s" % color,
              "tooltip=%s" % _q(_tooltip(e))]
    if not forward:
        common.append("dir=back")
    if not e["via"]:
        return ["  %s -> %s [%s];" % (left, right, ", ".join(["label=%s" % _q(e["label"])] + common))]
    fw = e["via"][0]
    # the outer segment (Internet or internal side) carries the full label, the perimeter
    # segment the figure number, so each arrow can be followed through the firewall
    outer = "label=%s" % _q(e["label"])
    inner = "label=%s" % _q(e["tag"])
    left_is_outer = zone_of[left] == "internet"
    first = common + [outer if left_is_outer else inner] + ([] if forward else [])
    second = common + [inner if left_is_outer else outer]
    if forward:
        first.append("arrowhead=none")
    else:
        second.append("arrowtail=none")
    return ["  %s -> %s:w [%s];" % (left, fw, ", ".join(first)),
            "  %s:e -> %s [%s];" % (fw, right, ", ".join(second))]


def _tooltip(e):
    if e["figure"] is None:
        return "%s %s (%s rule, opt-in)" % (e["rule"], e["service"], e["tag"])
    return "%s %s (table %d, figure %d)" % (e["rule"], e["service"], e["table"], e["figure"])


def _cluster(name, label, nodes):
    out = ["  subgraph cluster_%s {" % name, "    label=%s; style=dashed; color=\"#888888\";" % _q(label)]
    out += [_node_dot(n) for n in nodes]
    return out + ["  }"]


def to_dot(graph):
    """Graphviz DOT source of a graph from build_graph."""
    title = "Figure 7 (generated): Firewall ports for the perimeter network"
    sub = "site %s (%s), topology %s" % (graph["site"], graph["kind"], graph["topology"])
    legend = ["Arrows: the first packet of each allowed connection; replies pass by connection tracking.",
              "Label: figure-mapping number: protocol, destination port (from source port).",
              "Double red border: the server has its own host firewall."]
    colours = ", ".join('<FONT COLOR="%s">%s</FONT>' % (ROLE_COLORS[r], _html(ROLE_NAMES[r])) for r in ROLE_NAMES)
    label = "<B>%s</B><BR/>%s<BR/>%s<BR/>%s" % (_html(title), _html(sub), "<BR/>".join(
        '<FONT POINT-SIZE="11">%s</FONT>' % _html(x) for x in legend),
        '<FONT POINT-SIZE="11">Colour of an arrow: the role, %s</FONT>' % colours)
    out = ["digraph figure7 {",
           "  graph [rankdir=LR, ranksep=1.0, nodesep=0.3, fontname=\"Helvetica\", labelloc=t, fontsize=16,",
           "         label=<%s>, newrank=true];" % label,
           "  node [fontname=\"Helvetica\", fontsize=12];",
           "  edge [fontname=\"Helvetica\", fontsize=10, arrowsize=0.7];"]
    by_zone = {z: [n for n in graph["nodes"] if n["zone"] == z] for z in ZONE_ORDER}
    out += _cluster("internet", "Internet", by_zone["internet"])
    out += [_node_dot(n) for n in by_zone["external_firewall"]]
    out += _cluster("perimeter", "Perimeter network (site %s)" % graph["site"], by_zone["perimeter"])
    out += [_node_dot(n) for n in by_zone["internal_firewall"]]
    out += _cluster("internal", "Internal network", by_zone["internal"])
    out += _rank_skeleton(by_zone)
    zone_of = {n["id"]: n["zone"] for n in graph["nodes"]}
    for e in graph["edges"]:
        out += _edge_dot(e, zone_of)
    return "\n".join(out + ["}"]) + "\n"


def _rank_skeleton(by_zone):
    """Invisible edges that keep the zones in order, left to right."""
    out = []
    for z in ZONE_ORDER:
        if len(by_zone[z]) > 1:
            out.append("  { rank=same; %s }" % " ".join(n["id"] for n in by_zone[z]))
    present = [z for z in ZONE_ORDER if by_zone[z]]
    for a, b in zip(present, present[1:]):
        out.append("  %s -> %s [style=invis, weight=10];" % (by_zone[a][0]["id"], by_zone[b][0]["id"]))
    return out


def _site_policies(policy):
    """site -> the policy cut down to that site's servers, arrays, firewalls and rules.

    build_graph reads only its site's part; cutting once keeps a 1,000-site export linear
    instead of every site scanning (and sorting) the whole deployment."""
    dep = policy.get("deployment") or {}
    parts = {site: {"servers": {}, "arrays": {}, "firewalls": {}, "rules": []} for site in dep.get("sites") or {}}
    arrays = dep.get("arrays") or {}
    for name, srv in (dep.get("servers") or {}).items():
        part = parts.get(srv["site"])
        if part is not None:
            part["servers"][name] = srv
            if srv.get("array") in arrays:
                part["arrays"][srv["array"]] = arrays[srv["array"]]
    for name, fw in policy["firewalls"].items():
        if fw.get("site") in parts:
            parts[fw["site"]]["firewalls"][name] = fw
    for rule in policy["rules"]:
        if rule["site"] in parts:
            parts[rule["site"]]["rules"].append(rule)
    return {site: dict(policy, deployment=dict(dep, servers=part["servers"], arrays=part["arrays"]),
                       firewalls=part["firewalls"], rules=part["rules"])
            for site, part in parts.items()}


def site_graphs(policy):
    """{site: {"graph": data, "dot": source}} for every site of the policy."""
    out = {}
    for site, part in sorted(_site_policies(policy).items()):
        graph = build_graph(part, site)
        out[site] = {"graph": graph, "dot": to_dot(graph)}
    return out
