#!/usr/bin/env python3
"""Packet-level verifier of a lab: every flow of the policy answers, nothing else does.

Controller side (the host):

    lab/probe.py run --lab molecule/<s>/lab.json --policy out/molecule/<s>/policy/policy.json \\
                     --out out/molecule/<s> [--drift drift.json] [--name NAME]

  1. reads the exported policy and the lab description, builds the probe matrix:
     positive probes, one per seed rule (each rule of each network firewall), for each
     concrete address of the rule (VIPs included), TCP connect or UDP request/reply,
     port ranges sampled at both ends and inside (also for source-port ranges); negative
     probes: ports next to every range (49999, 60000), ports open on one role/address but
     not on another, the reverse of one-way rules, a source the rule does not name,
     Internet -> internal network and perimeter internal side, Internet -> 5062/8057 on
     every edge external address. Each probe's expected result comes from an evaluator of
     the policy itself (network firewall on the path + host firewall of the servers).
  2. starts listeners (TCP and UDP, every probed port, negative ones too, so a blocked
     probe is the firewall's doing and never a closed port) in the server containers;
     each answer carries the peer address the listener saw;
  3. runs the probes from the client containers in parallel (short timeouts), binding the
     rule's source address and source port;
  4. checks every container's routes: no route may point at the host (the podman bridge
     gateways), every routed hop must be a firewall container;
  5. writes probe-matrix.md and probe-matrix.xml (JUnit) into --out; exit status 1 when a
     probe or a route check fails.

  A positive probe passes when it is answered AND the listener saw the client's own
  address (no NAT: the A/V Edge must be reached un-NATed). A negative probe passes when
  it gets no answer (timeout or unreachable); "refused" means the packet got through.

  --drift FILE: a description of changes made to the live firewalls (see drift below);
  the run then expects the lab to behave like the policy WITH those changes, and reports
  which probes of the true policy the drift breaks (the verifier's own test: exactly
  those must fail against the true policy).

    lab/probe.py drift --lab LAB --policy POLICY --drift drift.json

  applies that drift to the live nftables/iptables firewalls (podman exec): deletes the
  rules with a given id, changes the port of another, adds a rogue allow rule.

Agent side (inside a container, via podman exec; the lab folder is mounted at /ocs-lab):

    python3 /ocs-lab/probe.py listen --tcp 443,5061 --udp 3478 --lifetime 120
    python3 /ocs-lab/probe.py probe < probes.json > results.json

stdlib only (the containers have python3 and nothing else). The code, by concern:
probe_agent.py (in the containers), probe_oracle.py (the lab's view of the collection's
evaluator, plugins/plugin_utils/flowquery.py), probe_matrix.py, probe_runner.py (podman),
probe_reports.py, probe_drift.py (drift planting).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import probe_agent  # noqa: E402  (stdlib only: the only module the containers need)


def _load(path):
    with open(path) as f:
        return json.load(f)


def _print_drift(diffs, drift):
    from probe_drift import drift_detected
    print("drift: %d probes of the true policy now behave differently (listed in the report):" % len(diffs))
    for p in diffs:
        print("  %s %s %s -> %s:%s, true policy: %s, now: %s" % (
            p["rule"] or p["label"], p["protocol"], p["src"], p["dst"], p["dport"], p["true_expect"], p["status"]))
    missing = drift_detected(diffs, drift)
    for m in missing:
        print("drift NOT detected: %s" % m)
    return 1 if missing or not diffs else 0


def cmd_run(args):
    from probe_drift import expect_drift
    from probe_matrix import build_matrix
    from probe_reports import print_summary, write_reports
    from probe_runner import route_checks, run_matrix
    lab, policy = _load(args.lab), _load(args.policy)
    name = args.name or lab["scenario"]
    start = time.time()
    probes = build_matrix(policy, lab)
    drift = _load(args.drift) if args.drift else None
    diffs = expect_drift(policy, lab, probes, drift) if drift is not None else None
    run_matrix(lab, probes)
    routes = route_checks(lab)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "probe-results.json"), "w") as f:
        json.dump({"probes": probes, "routes": routes}, f, indent=1)
    fails = write_reports(args.out, name, probes, routes, diffs,
                          " (drifted firewalls: expectations of the drifted policy)" if args.drift else "")
    if not args.quiet:
        print_summary(probes, routes)
    print("probe matrix %s: %d probes (%d allowed, %d denied) + %d route checks, %d failed, %.1f s; "
          "report: %s/probe-matrix.md, JUnit: %s/probe-matrix.xml" % (
              name, len(probes), sum(p["expect"] == "open" for p in probes),
              sum(p["expect"] == "blocked" for p in probes), len(routes), fails, time.time() - start,
              args.out, args.out))
    if diffs is not None and _print_drift(diffs, drift):
        return 1
    return 1 if fails else 0


def cmd_drift(args):
    """Apply a drift description (or the default one, written to --out/drift.json) to the
    live firewalls (nftables: table inet ocs_edge; iptables: the rules with the ocs comment)."""
    from probe_drift import default_drift, plant
    lab, policy = _load(args.lab), _load(args.policy)
    if args.drift and os.path.exists(args.drift):
        drift = _load(args.drift)
    else:
        drift = default_drift(policy, lab)
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "drift.json"), "w") as f:
            json.dump(drift, f, indent=1)
        print("drift: description written to %s" % os.path.join(args.out, "drift.json"))
    plant(policy, lab, drift)
    return 0


def cmd_matrix(args):
    from probe_matrix import build_matrix
    json.dump(build_matrix(_load(args.policy), _load(args.lab)), sys.stdout, indent=1)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    probe_agent.add_arguments(sub)
    for n in ("run", "drift", "matrix"):
        a = sub.add_parser(n)
        a.add_argument("--lab", required=True)
        a.add_argument("--policy", required=True)
        a.add_argument("--out", default=".")
        a.add_argument("--drift")
        a.add_argument("--name")
        a.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "listen":
        return probe_agent.agent_listen(args)
    if args.cmd == "probe":
        return probe_agent.agent_probe(args)
    return {"run": cmd_run, "drift": cmd_drift, "matrix": cmd_matrix}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
