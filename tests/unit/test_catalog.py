"""The catalog (data/seed_tables.yml) holds the page, row by row."""
import re

import pytest
import yaml

from seed_page import parse_page

from ansible_collections.ocs.edge_firewall.plugins.plugin_utils.policy import CATALOG_PATH

CATALOG = yaml.safe_load(CATALOG_PATH.read_text(encoding="utf-8"))
PAGE = parse_page()
ROLE_OF_TITLE = {"Reverse Proxy": "reverse_proxy", "Access Edge Server": "access_edge",
                 "Web Conferencing Edge Server": "web_conferencing_edge", "A/V Edge Server": "av_edge"}


def test_page_has_18_tables_and_67_rows():
    assert sorted(PAGE) == list(range(9, 27))
    assert sum(len(t["rows"]) for t in PAGE.values()) == 67
    assert len(CATALOG["rows"]) == 67


@pytest.mark.parametrize("table", range(9, 27))
def test_table_matches_page(table):
    page_rows = PAGE[table]["rows"]
    rows = [r for r in CATALOG["rows"] if r["table"] == table]
    assert CATALOG["tables"][table]["role"] == ROLE_OF_TITLE[PAGE[table]["title"]]
    assert [r["row"] for r in rows] == list(range(1, len(page_rows) + 1))
    for page, row in zip(page_rows, rows):
        where = "table %d row %d" % (table, row["row"])
        # Verbatim text is the page's.
        assert row["page_local_port"] == page["Local Port"], where
        assert row["page_remote_port"] == page["Remote Port"], where
        assert row["page_direction"] == page["Direction"], where
        assert row["page_local_ip"] == page["Local IP"], where
        assert row["page_remote_ip"] == page["Remote IP"], where
        assert row["figure"] == page["figure"], where
        assert row["firewall"] == page["firewall"], where
        # Interpreted fields agree with the verbatim text.
        port_text = page["Local Port"] if page["Local Port"] != "Any" else page["Remote Port"]
        number, proto, label = re.match(r"([\d,-]+) (TCP|UDP) \((.*)\)$", port_text).groups()
        assert row["protocol"] == proto.lower(), where
        assert row["service"] == label.replace(" ", ""), where
        local = "any" if page["Local Port"] == "Any" else number.replace(",", "")
        remote = "any" if page["Remote Port"] == "Any" else number.replace(",", "")
        assert (row["local_ports"], row["remote_ports"]) == (local, remote), where
        word = page["Direction"].split(" ")[0]
        assert row["direction"] == {"Inbound/Outbound": "both", "Inbound": "inbound", "Outbound": "outbound"}[word], where


def test_vip_rows_only_where_the_page_says_vip():
    for row in CATALOG["rows"]:
        says_vip = "VIP" in row["page_local_ip"]
        assert row["local_address"].endswith("vip") == says_vip, (row["table"], row["row"])
        says_ip = "IP address of" in row["page_local_ip"] or "IP addresses of" in row["page_local_ip"]
        assert ("_ip" in row["local_address"]) == says_ip, (row["table"], row["row"])


def test_remote_address_refs():
    refs = {(r["table"], r["row"]): r["remote_address"] for r in CATALOG["rows"] if r["remote_address"] != "any"}
    assert refs == {(t, 1): "next_hop" for t in (10, 14, 18)} | {(t, 2): "director_or_any" for t in (10, 14, 18)}


def test_topologies_use_the_right_tables():
    topo = {k: v["sites"] for k, v in CATALOG["topologies"].items()}
    assert topo["consolidated"] == {"central": [9, 10, 11, 12]}
    assert topo["multi_site"] == {"central": [17, 18, 19, 20], "remote": [21, 22, 23]}
    assert topo["scaled_remote_site"]["remote"] == [24, 25, 26]
    for tables in topo["multi_site"]["remote"], topo["scaled_remote_site"]["remote"]:
        assert "access_edge" not in {CATALOG["tables"][t]["role"] for t in tables}


def test_contradictions_name_real_tables_and_a_choice():
    ids = [c["id"] for c in CATALOG["contradictions"]]
    assert len(ids) == len(set(ids))
    assert "reverse_proxy_internal_label" in ids
    for c in CATALOG["contradictions"]:
        assert set(c["tables"]) <= set(range(9, 27)) and c["page"] and c["choice"]
    rp_internal = {r["table"]: r["service"] for r in CATALOG["rows"]
                   if CATALOG["tables"][r["table"]]["role"] == "reverse_proxy" and r["firewall"] == "internal"}
    assert rp_internal == {9: "HTTP(S)", 13: "SIP/TLS", 17: "HTTP(S)", 21: "HTTP(S)", 24: "SIP/TLS"}
