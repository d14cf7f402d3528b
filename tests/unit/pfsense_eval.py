"""A small model of how pfSense evaluates the written config.xml, for the tests' proofs.

Independent of the library (minidom, its own reading of every element). It follows filter.inc:

* filter: the anti-lockout rule (``pass in quick on $LAN proto tcp to ($LAN) port {GUI, 80, SSH}``)
  is loaded before the user rules; floating rules are not modelled (the fixtures have none
  quick on these interfaces); the rules of the interface a packet **enters** are evaluated in
  document order and every GUI rule is ``quick``: the first match decides; nothing matched ->
  pfSense's ``Default deny rule IPv4``. Only new connections (states pass the rest).
* outbound NAT (``filter_nat_rules_generate()``): mode ``disabled`` translates nothing;
  ``advanced``/``hybrid`` evaluate the user's ``<nat><outbound><rule>`` first, in document order,
  first match (``no nat`` for ``<nonat>``); ``automatic``/``hybrid`` then add
  ``nat on <if> from <tonathosts> to any -> <if address>`` for every interface with a gateway,
  ``tonathosts`` being localhost and the subnets of the interfaces without one
  (``filter_nat_rules_automatic_tonathosts()``).
"""
import ipaddress
from xml.dom import minidom

from test_pfsense_helpers import _child, _children, _text  # noqa: F401


class Config(object):
    def __init__(self, data):
        self.root = minidom.parseString(data).documentElement
        self.ifaces = {}
        for node in self._elements(_child(self.root, "interfaces")):
            ip, sn = _text(node, "ipaddr"), _text(node, "subnet")
            addr = ipaddress.ip_interface("%s/%s" % (ip, sn)) if ip and sn and ip[0].isdigit() else None
            self.ifaces[node.tagName] = {"addr": addr, "gateway": bool(_text(node, "gateway")) or ip == "dhcp"}
        self.aliases = {}
        for alias in _children(_child(self.root, "aliases"), "alias") if _child(self.root, "aliases") else []:
            self.aliases[_text(alias, "name")] = (_text(alias, "address") or "").split()

    @staticmethod
    def _elements(node):
        return [c for c in node.childNodes if c.nodeType == c.ELEMENT_NODE] if node is not None else []

    # ---------------------------------------------------------------- matching

    def _nets(self, value):
        """An address/network value -> list of ip_network (aliases and interface macros resolved)."""
        if value in self.aliases:
            return [ipaddress.ip_network(e, strict=False) for e in self.aliases[value]]
        if value == "(self)":
            return [ipaddress.ip_network(i["addr"].ip) for i in self.ifaces.values() if i["addr"]]
        if value.endswith("ip") and value[:-2] in self.ifaces:
            return [ipaddress.ip_network(self.ifaces[value[:-2]]["addr"].ip)]
        if value in self.ifaces:
            return [self.ifaces[value]["addr"].network]
        return [ipaddress.ip_network(value, strict=False)]

    def _addr_match(self, end, ip):
        if end is None or _child(end, "any") is not None:
            hit = True
        else:
            value = _text(end, "address") or _text(end, "network")
            hit = value == "any" or any(ipaddress.ip_address(ip) in n for n in self._nets(value))
        return hit != (_child(end, "not") is not None) if end is not None else hit

    def _port_match(self, end, port):
        spec = _text(end, "port") if end is not None else None
        if not spec:
            return True
        entries = self.aliases.get(spec, [spec])
        for entry in entries:
            lo, _s, hi = entry.replace(":", "-").partition("-")
            if int(lo) <= port <= int(hi or lo):
                return True
        return False

    def _rule_match(self, rule, pkt):
        proto = _text(rule, "protocol")
        if _text(rule, "ipprotocol") not in ("inet", "inet46") or _child(rule, "disabled") is not None:
            return False
        if proto and pkt["proto"] not in proto.split("/"):
            return False
        src, dst = _child(rule, "source"), _child(rule, "destination")
        return (self._addr_match(src, pkt["src"]) and self._addr_match(dst, pkt["dst"])
                and self._port_match(src, pkt["sport"]) and self._port_match(dst, pkt["dport"]))

    # ---------------------------------------------------------------- filter

    def antilockout_ports(self):
        webgui = _child(_child(self.root, "system"), "webgui")
        proto = _text(webgui, "protocol")
        gui = _text(webgui, "port") or ("443" if proto == "https" else "80")
        ports = [int(gui)] + ([80] if proto == "https" and gui != "80" else [])
        ssh = _child(_child(self.root, "system"), "ssh")
        if ssh is not None and _child(ssh, "enable") is not None:
            ports.append(int(_text(ssh, "port") or 22))
        return ports

    def filter(self, iface, src, dst, proto="tcp", dport=443, sport=40000):
        """-> ("pass" | "block", the description of the deciding rule)."""
        pkt = {"src": src, "dst": dst, "proto": proto, "dport": dport, "sport": sport}
        lan = self.ifaces.get("lan")
        if (iface == "lan" and lan and lan["addr"] and proto == "tcp" and dst == str(lan["addr"].ip)
                and dport in self.antilockout_ports()):
            return "pass", "anti-lockout rule"
        for rule in _children(_child(self.root, "filter"), "rule"):
            if _child(rule, "floating") is not None or _text(rule, "interface") != iface:
                continue
            if self._rule_match(rule, pkt):
                return _text(rule, "type"), _text(rule, "descr")
        return "block", "Default deny rule IPv4"

    # ---------------------------------------------------------------- outbound NAT

    def nat(self, iface, src, dst="192.0.2.99"):
        """-> (translated?, deciding rule) for a new connection leaving ``iface``."""
        outbound = _child(_child(self.root, "nat"), "outbound") if _child(self.root, "nat") else None
        mode = (_text(outbound, "mode") if outbound is not None else None) or "automatic"
        if mode == "disabled":
            return False, "outbound NAT disabled"
        if mode in ("advanced", "hybrid"):
            for rule in _children(outbound, "rule"):
                if _child(rule, "disabled") is not None or _text(rule, "interface") != iface:
                    continue
                if self._addr_match(_child(rule, "source"), src) and self._addr_match(_child(rule, "destination"), dst):
                    return _child(rule, "nonat") is None, _text(rule, "descr")
        if mode in ("automatic", "hybrid") and self.ifaces[iface]["gateway"]:
            tonat = [ipaddress.ip_network("127.0.0.0/8")] + [
                i["addr"].network for i in self.ifaces.values() if i["addr"] and not i["gateway"]]
            if any(ipaddress.ip_address(src) in n for n in tonat):
                return True, "Auto created rule"
        return False, "no rule"
