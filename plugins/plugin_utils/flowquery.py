# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Would this flow pass, and by which rule? The policy's one evaluator.

Used by the filter ``edge_flow_query`` (playbooks/query_flow.yml), by the live query (the same
question asked of the rules a firewall enforces) and by the lab's probe matrix (lab/probe.py),
so users and the lab share one answer.

A flow is the first packet of a connection: protocol, source address and port, destination
address and port. Its path: Internet <-> perimeter of site S crosses the external firewall of
S; perimeter of S <-> internal network crosses the internal firewall of S. On the way it may
also meet the destination server's own host firewall (chain input). Replies pass by connection
tracking, so a flow is judged by its first packet only.

Where an address is: an address the policy names in a site's perimeter (a server's IP or an
array's VIP) is in that perimeter; the Director / next hop and the management networks are
internal; other private addresses (RFC 1918) are internal; every other address is the
Internet. A caller may say where an address is (``src_zone``/``dst_zone``) when this guess is
wrong (a lab whose Internet uses private addresses, for example).

stdlib only: the lab loads this file without Ansible.
"""
from __future__ import annotations

import ipaddress

ZONES = ("internet", "perimeter", "internal")
_PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]
NEAREST_LIMIT = 4


# ----------------------------------------------------------------------------- matching

def parse_ports(spec):
    """[(lo, hi)] of a PFRULE port list ("443", "50000-59999"); None = any."""
    if spec is None:
        return None
    out = []
    for p in spec:
        lo, _, hi = str(p).partition("-")
        out.append((int(lo), int(hi or lo)))
    return out


def port_in(port, spec):
    """Is the port in the list? An unknown port (None) is in any list (the caller picks one)."""
    rng = parse_ports(spec)
    return rng is None or port is None or any(lo <= port <= hi for lo, hi in rng)


def addr_in(ip, spec):
    if spec is None:
        return True
    a = ipaddress.ip_address(ip)
    return any(a in ipaddress.ip_network(x, strict=False) for x in spec)


def rule_matches(rule, proto, src, sport, dst, dport):
    return (rule["protocol"] == proto and addr_in(src, rule["src"]) and addr_in(dst, rule["dst"])
            and port_in(sport, rule["sport"]) and port_in(dport, rule["dport"]))


# ----------------------------------------------------------------------------- where addresses are

def address_book(policy):
    """{ip: {"zone", "site", "what"}} for every address the deployment places somewhere: its
    servers' addresses and array VIPs (perimeter), the Director, its pool members and the next
    hop (internal). A policy.json without `deployment.servers` (older exports) places the
    perimeter addresses of its seed rules instead."""
    book = {}
    dep = policy.get("deployment") or {}
    for key in ("director", "next_hop"):
        if dep.get(key):
            book[dep[key]] = {"zone": "internal", "site": None, "what": key.replace("_", " ")}
    for a in dep.get("director_members") or []:
        book[a] = {"zone": "internal", "site": None, "what": "Director pool member"}
    if "servers" not in dep:
        _perimeter_from_rules(policy, book)
    for name, srv in (dep.get("servers") or {}).items():
        for side in ("internal", "external"):
            for role, a in sorted((srv.get(side) or {}).items()):
                book[a] = {"zone": "perimeter", "site": srv["site"], "what": "%s IP of %s" % (side, name)}
    for name, arr in (dep.get("arrays") or {}).items():
        for side in ("internal", "external"):
            if arr.get(side + "_vip"):
                book[arr[side + "_vip"]] = {"zone": "perimeter", "site": arr.get("site"),
                                            "what": "%s VIP of %s" % (side, name)}
    return book


def _perimeter_from_rules(policy, book):
    for fw in policy["firewalls"].values():
        if fw["mode"] != "network":
            continue
        for r in fw["rules"]:
            for addrs, zone in ((r["src"], r.get("src_zone")), (r["dst"], r.get("dst_zone"))):
                if zone == "perimeter":
                    for a in addrs or []:
                        book.setdefault(a, {"zone": "perimeter", "site": fw["site"],
                                            "what": "%s side of the perimeter" % fw["side"]})


def locate(policy, ip, zone=None, site=None, book=None):
    """Where an address is: {"ip", "zone", "site", "what"}; zone/site override the guess."""
    ipaddress.ip_address(ip)  # a clear ValueError for a mistyped address
    book = address_book(policy) if book is None else book
    loc = dict(book.get(ip) or _in_network(book, ip) or _guess(policy, ip), ip=ip)
    if zone:
        if zone not in ZONES:
            raise ValueError("zone %r is not one of %s" % (zone, ", ".join(ZONES)))
        if zone != loc["zone"]:
            loc.update(zone=zone, what="given as %s" % zone, site=None)
    if site:
        loc["site"] = site
    if loc["zone"] == "perimeter" and not loc["site"]:
        loc["site"] = _only_site(policy)
    return loc


def _in_network(book, ip):
    """An address inside a network the policy places (opt-in rules may name CIDRs)."""
    a = ipaddress.ip_address(ip)
    for key, where in book.items():
        if "/" in key and a in ipaddress.ip_network(key, strict=False):
            return where
    return None


def _guess(policy, ip):
    a = ipaddress.ip_address(ip)
    for fw in policy["firewalls"].values():
        for net in (fw.get("management") or {}).get("sources") or []:
            if a in ipaddress.ip_network(net, strict=False):
                return {"zone": "internal", "site": None, "what": "management network"}
    if any(a in n for n in _PRIVATE if n.version == a.version):
        return {"zone": "internal", "site": None, "what": "private address, taken as internal"}
    return {"zone": "internet", "site": None, "what": "not in the deployment, taken as Internet"}


def _only_site(policy):
    sites = sorted((policy.get("deployment") or {}).get("sites") or {})
    return sites[0] if len(sites) == 1 else None


def path(policy, src_loc, dst_loc):
    """Network firewalls the flow crosses, in order: [(name, firewall)] (may be empty).
    Internet <-> internal crosses the internal and the external firewall of one site: the one
    given, else the only site, else the first central site."""
    zones = (src_loc["zone"], dst_loc["zone"])
    if zones[0] == zones[1]:
        return []
    if "perimeter" in zones:
        per = src_loc if zones[0] == "perimeter" else dst_loc
        other = zones[1] if zones[0] == "perimeter" else zones[0]
        return _firewalls(policy, "external" if other == "internet" else "internal", per["site"])
    site = src_loc.get("site") or dst_loc.get("site") or _exit_site(policy)
    inner, outer = _firewalls(policy, "internal", site), _firewalls(policy, "external", site)
    return inner + outer if zones[0] == "internal" else outer + inner


def _firewalls(policy, side, site):
    return [(n, fw) for n, fw in sorted(policy["firewalls"].items())
            if fw["mode"] == "network" and fw["side"] == side and fw["site"] == site]


def _exit_site(policy):
    sites = (policy.get("deployment") or {}).get("sites") or {}
    central = sorted(s for s, kind in sites.items() if kind == "central")
    return (central or sorted(sites) or [None])[0]


def host_firewalls_of(policy, ip):
    """Host firewalls protecting the host that holds this address (its own IPs, not VIPs)."""
    own = {}
    for name, fw in policy["firewalls"].items():
        if fw["mode"] != "host":
            continue
        for r in fw["rules"]:
            mine = r["dst"] if r["chain"] == "input" else r["src"]
            for a in mine or []:
                own.setdefault(a, set()).add(name)
    for name, srv in ((policy.get("deployment") or {}).get("servers") or {}).items():
        if name in policy["firewalls"]:
            for side in ("internal", "external"):
                for a in (srv.get(side) or {}).values():
                    own.setdefault(a, set()).add(name)
    return sorted(own.get(ip, ()))


# ----------------------------------------------------------------------------- the verdict

def evaluate(policy, proto, src, dst, dport, sport=None, src_zone=None, dst_zone=None,
             src_site=None, dst_site=None, host_platforms=None, catalog=None, live=None):
    """The answer for one flow: allowed or denied on each firewall of its path, and why.

    host_platforms: which host firewalls count (None: all; the lab enforces only Linux ones).
    catalog: the seed tables (data/seed_tables.yml) to quote the page's words per rule.
    live: {firewall name: what it enforces (module live_rules)}: those firewalls are judged by
    their live rules instead of the policy's (the path still comes from the policy).
    """
    proto = str(proto).lower()
    if proto not in ("tcp", "udp"):
        raise ValueError("protocol %r: tcp or udp" % proto)
    dport, sport = _port_arg(dport, "dport"), _port_arg(sport, "sport")
    book = address_book(policy)
    sloc = locate(policy, src, src_zone, src_site, book)
    dloc = locate(policy, dst, dst_zone, dst_site, book)
    flow = {"protocol": proto, "src": src, "sport": sport, "dst": dst, "dport": dport}
    live = live or {}
    hops = [_hop(name, fw, "forward", flow, live.get(name), *_sides(fw, sloc, dloc))
            for name, fw in path(policy, sloc, dloc)]
    if hops:
        for name in host_firewalls_of(policy, dst):
            fw = policy["firewalls"][name]
            if host_platforms is None or fw["platform"] in host_platforms:
                hops.append(_hop(name, fw, "input", flow, live.get(name)))
    allowed = bool(hops) and all(h["allowed"] for h in hops)
    answer = {"flow": flow, "src": sloc, "dst": dloc, "allowed": allowed, "hops": hops,
              "rules": [i for h in hops if h["mode"] == "network" for i in h["rules"]],
              "why": _why(allowed, hops, sloc, dloc)}
    answer["rule_info"] = rule_info(policy, _mentioned(hops), catalog)
    return answer


def _sides(fw, sloc, dloc):
    """The zones a network firewall sees the flow enter from and leave to (the perimeter when
    the flow's own end is beyond the other firewall)."""
    zones = {"internal": ("perimeter", "internal"), "external": ("internet", "perimeter")}[fw["side"]]
    return tuple(loc["zone"] if loc["zone"] in zones else "perimeter" for loc in (sloc, dloc))


def _port_arg(value, what):
    if value in (None, "", "any"):
        return None
    port = int(value)
    if not 0 <= port <= 65535:
        raise ValueError("%s %r is not a port number" % (what, value))
    return port


def _hop(name, fw, chain, flow, live=None, entry_zone=None, exit_zone=None):
    hop = {"firewall": name, "mode": fw["mode"], "side": fw["side"], "site": fw["site"],
           "platform": fw["platform"], "chain": chain, "source": "policy", "nearest": []}
    if live is not None:
        ifnames = fw.get("interfaces") or {}
        ifaces = (ifnames.get(entry_zone), ifnames.get(exit_zone)) if fw["mode"] == "network" else (None, None)
        start = (live.get("hooks") or {}).get(chain)
        if live.get("interface_chains"):     # pfSense: rules of the interface the packet enters
            start = live["interface_chains"].get(ifaces[0], "no rules on interface %s" % ifaces[0])
        return _live_hop(hop, live, chain, start, flow, ifaces)
    f = flow
    ids = [r["id"] for r in fw["rules"] if r["chain"] == chain
           and rule_matches(r, f["protocol"], f["src"], f["sport"], f["dst"], f["dport"])]
    hop.update(allowed=bool(ids), rules=ids)
    if ids:
        conditional = [r for r in fw["rules"] if r["id"] in ids and r["sport"] and f["sport"] is None]
        if conditional:
            hop["note"] = "only from source port(s) %s" % ", ".join(conditional[0]["sport"])
    else:
        hop["nearest"] = nearest_rules(fw, chain, flow)
    return hop


# ----------------------------------------------------------------------------- live rules

def _iface_ok(match, name):
    """An interface match against the interface the flow uses (None: not known here)."""
    if match is None:
        return True
    names = match["names"]
    if name is None:        # unknown: only loopback can be ruled out (no flow between hosts uses it)
        hit = names == ["lo"]
        return hit if match["negated"] else not hit
    hit = any(name == n or (n[-1:] in "+*" and name.startswith(n[:-1])) for n in names)
    return hit != match["negated"]


def _live_matches(r, flow, ifaces):
    f = flow
    return ((r["protocol"] is None or r["protocol"] == f["protocol"]) and addr_in(f["src"], r["src"])
            and addr_in(f["dst"], r["dst"]) and port_in(f["sport"], r["sport"]) and port_in(f["dport"], r["dport"])
            and _iface_ok(r.get("iif"), ifaces[0]) and _iface_ok(r.get("oif"), ifaces[1]))


def _walk(live, name, flow, ifaces, seen, depth=0):
    """First rule that decides the first packet in chain `name` (following jumps), or None."""
    chain = live["chains"].get(name) or {"rules": []}
    for r in chain["rules"]:
        if not r["new"] or r["protocol"] == "icmp" or not _live_matches(r, flow, ifaces):
            continue
        if r["unsupported"]:
            seen.append(r)      # cannot tell whether it matches: reported, not taken
            continue
        act = r["action"]
        if act in ("accept", "drop", "reject"):
            return r
        if act == "return":
            return None
        if act.split(" ")[0] in ("jump", "goto") and depth < 16:
            found = _walk(live, act.split(" ", 1)[1], flow, ifaces, seen, depth + 1)
            if found is not None or act.startswith("goto"):
                return found
    return None


def _live_hop(hop, live, chain, start, flow, ifaces=(None, None)):
    """The hop judged by what the firewall enforces: the first deciding rule from chain
    `start`, else that chain's policy (a chain absent from the live state blocks nothing on
    Linux, everything on pfSense)."""
    hop.update(source="live", uncertain=[])
    if start is None:
        hop.update(allowed=True, rules=["no %s chain: nothing filters" % chain], decided_by=None)
        return hop
    r = _walk(live, start, flow, ifaces, hop["uncertain"])
    if r is None:
        default = "drop" if live.get("interface_chains") else "accept"
        policy = (live["chains"].get(start) or {}).get("policy") or default
        hop.update(allowed=policy == "accept", decided_by="chain %s policy %s" % (start, policy))
    else:
        hop.update(allowed=r["action"] == "accept", decided_by="%s (%s)" % (r["id"], r["text"]))
    hop["rules"] = [r["id"]] if hop["allowed"] and r is not None else []
    hop["uncertain"] = ["%s: %s" % (u["id"], ", ".join(u["unsupported"])) for u in hop["uncertain"]]
    if not hop["allowed"]:
        accepts = [dict(x, chain=chain) for c in live["chains"].values() for x in c["rules"]
                   if x["action"] == "accept" and x["new"] and x["protocol"] in ("tcp", "udp")]
        hop["nearest"] = nearest_rules({"rules": accepts}, chain, flow)
    return hop


def _why(allowed, hops, sloc, dloc):
    if not hops:
        return "no firewall of this policy forwards between %s (%s) and %s (%s)" % (
            sloc["zone"], sloc["what"], dloc["zone"], dloc["what"])
    if allowed:
        return "allowed by " + "; ".join("%s (%s)" % (h["firewall"], ", ".join(h["rules"])) for h in hops)
    return "denied by " + "; ".join(
        "%s (%s)" % (h["firewall"], h.get("decided_by") or "no %s rule matches" % h["chain"])
        for h in hops if not h["allowed"])


def _mentioned(hops):
    ids = []
    for h in hops:
        for i in h["rules"] + [n["rule"] for n in h["nearest"]]:
            if i not in ids:
                ids.append(i)
    return ids


# ----------------------------------------------------------------------------- why not

def nearest_rules(fw, chain, flow):
    """Rules of this firewall close to a denied flow, each with what differs."""
    f = flow
    found = {"the reverse direction": [], "other source port": [],
             "same destination, other port": [], "same port, other address": []}
    for r in fw["rules"]:
        if r["chain"] != chain:
            continue
        src_ok, dst_ok = addr_in(f["src"], r["src"]), addr_in(f["dst"], r["dst"])
        port_ok = r["protocol"] == f["protocol"] and port_in(f["dport"], r["dport"])
        if rule_matches(r, f["protocol"], f["dst"], None, f["src"], f["dport"]):
            kind = "the reverse direction"
        elif src_ok and dst_ok and port_ok:
            kind = "other source port"
        elif r["dst"] is not None and dst_ok and src_ok:
            kind = "same destination, other port"
        elif port_ok and r["dport"] is not None:
            kind = "same port, other address"
        else:
            continue
        if any(n["rule"] == r["id"] for n in found[kind]):
            continue        # a rule rendered as several live rules: named once
        found[kind].append({"rule": r["id"], "relation": kind, "protocol": r["protocol"],
                            "src": r["src"], "sport": r["sport"], "dst": r["dst"], "dport": r["dport"]})
    for kind in found:      # closest ports first
        found[kind].sort(key=lambda n: _port_distance(f["dport"], n["dport"]))
    return [n for kind in found for n in found[kind][:NEAREST_LIMIT]]


def _port_distance(port, spec):
    if port is None or spec is None:
        return 0
    return min(0 if lo <= port <= hi else min(abs(port - lo), abs(port - hi)) for lo, hi in parse_ports(spec))


def rule_info(policy, ids, catalog=None):
    """Per rule id: table, figure, row, service, direction, and the page's words for the row."""
    by_id = {r["id"]: r for r in policy.get("rules") or []}
    rows = {(r["table"], r["row"]): r for r in (catalog or {}).get("rows") or []}
    info = {}
    for i in ids:
        r = by_id.get(i)
        if r is None:
            info[i] = {"id": i, "note": "not a rule of the policy"}
            continue
        info[i] = {k: r.get(k) for k in ("id", "table", "figure", "row", "server_role", "firewall",
                                          "direction", "protocol", "service", "site", "extra", "note", "reason")}
        row = rows.get((r["table"], r["row"]))
        if row:
            info[i]["page"] = {k[5:]: v for k, v in row.items() if k.startswith("page_")}
            if row.get("purpose"):
                info[i]["page"]["purpose"] = row["purpose"]
    return info


# ----------------------------------------------------------------------------- for people

def _ports_text(spec):
    return "any" if spec is None else ",".join(spec)


def format_answer(answer):
    """The answer as lines of text (what playbooks/query_flow.yml prints)."""
    f = answer["flow"]
    lines = ["%s %s:%s -> %s:%s: %s" % (
        f["protocol"], f["src"], f["sport"] or "any", f["dst"], f["dport"] or "any",
        "ALLOWED" if answer["allowed"] else "DENIED"),
        "  source %s (%s), destination %s (%s)" % (
            answer["src"]["zone"], answer["src"]["what"], answer["dst"]["zone"], answer["dst"]["what"])]
    if not answer["hops"]:
        lines.append("  " + answer["why"])
    for h in answer["hops"]:
        verdict = ("allowed by " + ", ".join(h["rules"])) if h["allowed"] else (
            "denied by " + h["decided_by"] if h.get("decided_by") else "denied, no rule matches")
        lines.append("  %s (%s firewall, %s, site %s, chain %s, %s): %s" % (
            h["firewall"], h["side"] if h["mode"] == "network" else "host", h["platform"], h["site"], h["chain"],
            "as enforced (live)" if h["source"] == "live" else "per the policy", verdict))
        lines += ["    not judged (match the query cannot read): %s" % u for u in h.get("uncertain") or []]
        lines += ["    " + _rule_line(answer["rule_info"].get(i, {"id": i})) for i in h["rules"]]
        if h.get("note"):
            lines.append("    note: " + h["note"])
        for n in h["nearest"]:
            lines.append("    nearest (%s): %s %s %s:%s -> %s:%s" % (
                n["relation"], n["rule"], n["protocol"], _ports_text(n["src"]), _ports_text(n["sport"]),
                _ports_text(n["dst"]), _ports_text(n["dport"])))
            lines.append("      " + _rule_line(answer["rule_info"].get(n["rule"], {"id": n["rule"]})))
    return lines


def _rule_line(info):
    if "table" not in info:
        return "%s: %s" % (info["id"], info.get("note", ""))
    if info["figure"] is None:      # opt-in rules (extras.py): no seed row, a reason instead
        return "%s: %s, %s %s %s; %s" % (
            info["id"], "note of table %s, opt-in" % info["table"] if info.get("note") else "extra rule, not on the page",
            info["firewall"], info["direction"], info["service"], info.get("reason") or "")
    text = "%s: table %d row %d, figure %d, %s %s %s %s" % (
        info["id"], info["table"], info["row"], info["figure"], info["server_role"], info["firewall"],
        info["direction"], info["service"])
    page = info.get("page")
    if page:
        text += '; page: local port "%s", remote port "%s", direction "%s", local IP "%s", remote IP "%s"' % (
            page.get("local_port"), page.get("remote_port"), page.get("direction"),
            " ".join(str(page.get("local_ip")).split()), " ".join(str(page.get("remote_ip")).split()))
    return text


def compare(policy_answer, live_answer):
    """Where the live firewalls and the policy disagree, per firewall read live:
    ([{"firewall", "policy", "live", "policy_rules", "live_rules", "live_decided_by"}], text lines)."""
    by_fw = {h["firewall"]: h for h in policy_answer["hops"]}
    drift, lines = [], []
    for h in live_answer["hops"]:
        p = by_fw.get(h["firewall"])
        if h["source"] != "live" or p is None or p["allowed"] == h["allowed"]:
            continue
        drift.append({"firewall": h["firewall"], "policy": p["allowed"], "live": h["allowed"],
                      "policy_rules": p["rules"], "live_rules": h["rules"], "live_decided_by": h.get("decided_by")})
        lines.append("DRIFT on %s: the policy %s (%s), the live rules %s (%s)" % (
            h["firewall"], "allows it" if p["allowed"] else "denies it",
            ", ".join(p["rules"]) or "no rule", "allow it" if h["allowed"] else "deny it",
            ", ".join(h["rules"]) if h["allowed"] else h.get("decided_by")))
    if not drift:
        lines.append("policy and live rules agree on every firewall read (%s)" % (
            ", ".join(h["firewall"] for h in live_answer["hops"] if h["source"] == "live") or "none read"))
    return drift, lines
