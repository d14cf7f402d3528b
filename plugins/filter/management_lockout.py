# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter management_lockout: would this rule set cut the connection Ansible is using?

Documentation: management_lockout.yml beside this file.
"""
from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError


def _ports(values):
    out = []
    for value in values or ["22"]:
        lo, _ignored, hi = str(value).partition("-")
        out.append((int(lo), int(hi or lo)))
    return out


def connection_endpoint(env, ansible_port=None):
    """(controller address as the firewall sees it, port) from the remote SSH_CONNECTION
    ("client_ip client_port server_ip server_port") or SSH_CLIENT ("client_ip client_port
    server_port"); (None, None) when the connection is not SSH (local, podman, WinRM)."""
    env = env or {}
    conn = str(env.get("SSH_CONNECTION") or "").split()
    client = str(env.get("SSH_CLIENT") or "").split()
    if len(conn) == 4:
        address, port = conn[0], conn[3]
    elif len(client) == 3:
        address, port = client[0], client[2]
    else:
        return None, None
    if ansible_port not in (None, ""):
        port = ansible_port
    return address, int(port)


def management_lockout(firewall, env, ansible_port=None, host="firewall"):
    """'' when the FIREWALL's management rule lets the controller's SSH connection in (or the
    connection is not SSH), else the message that refuses the deploy."""
    if not isinstance(firewall, dict):
        raise AnsibleFilterError("management_lockout expects the FIREWALL dict")
    address, port = connection_endpoint(env, ansible_port)
    if address is None:
        return ""
    mgmt = firewall.get("management") or {}
    sources = [ipaddress.ip_network(str(s), strict=False) for s in mgmt.get("sources") or []]
    ports = _ports(mgmt.get("ports"))
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return "%s: cannot read the controller's address %r from SSH_CONNECTION" % (host, address)
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    covered = any(ip in net for net in sources if net.version == ip.version)
    open_port = any(lo <= port <= hi for lo, hi in ports)
    if covered and open_port:
        return ""
    missing = []
    if not covered:
        missing.append("the address %s is not in ocs_management_networks %s" % (ip, [str(s) for s in sources]))
    if not open_port:
        missing.append("TCP port %d is not in ocs_management_ports %s" % (port, mgmt.get("ports")))
    return ("%s: refusing to apply: the rule set would cut the connection Ansible is using (the controller "
            "reaches this firewall from %s on TCP port %d): %s. Add the controller's address/port to those "
            "variables, or set ocs_allow_management_lockout: true to apply anyway."
            % (host, ip, port, "; ".join(missing)))


class FilterModule:
    def filters(self):
        return {"management_lockout": management_lockout}
