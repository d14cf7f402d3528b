# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backend contract (docs/backend-contract.md): the steps every platform implements under
the same names, and the one driver, :func:`enforce`, that runs them.

A backend owns a well-delimited part of the firewall (nftables: one table; iptables: three
chains and the jumps to them) and implements six steps (validate and persist have defaults)::

    desired(firewall)       FIREWALL dict -> desired state (parsed once by rules.parse_firewall)
    read_live()             the owned part as it is now (None when absent)
    compare(desired, live)  -> Changes (created / updated / removed, by rule id or <kind>:<name>)
    render(state)           readable canonical text of a state, for --diff ('' for None)
    validate(desired, live) let the platform's own tool check the change without applying it
    apply(desired, live)    one transaction from live to desired
    persist(desired)        -> [FileChange] that make the boot configuration hold ``desired``
                            (desired None: hold nothing of ours)
    remove(live)            delete the owned part

Every step raises FirewallError (or a subclass) with a message that names the firewall.
:func:`enforce` does absent / check mode / diff / validate / apply / read back / persist, in that
order, and returns the result shape every backend shares: changed, created, updated, removed,
diff, warnings.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import os
import tempfile
from collections import Counter, OrderedDict

from ansible_collections.ocs.edge_firewall.plugins.module_utils import lock
from ansible_collections.ocs.edge_firewall.plugins.module_utils.rules import FirewallError, where

STILL_IN_FORCE = "The previous rule set is still in force."
IN_FORCE = "The new rule set IS IN FORCE (the transaction was committed)"


class Changes(object):
    """What differs: lists of rule ids (central-t20-f14-out, base:mgmt) and owned objects
    (<kind>:<name>, e.g. chain:forward, table:inet ocs_edge, file:/etc/nftables.conf)."""

    def __init__(self, created=(), updated=(), removed=()):
        self.created, self.updated, self.removed = [], [], []
        self.add(created, updated, removed)

    def add(self, created=(), updated=(), removed=()):
        for target, items in ((self.created, created), (self.updated, updated), (self.removed, removed)):
            for item in items:
                if item not in target:
                    target.append(item)
        return self

    @property
    def changed(self):
        return bool(self.created or self.updated or self.removed)

    def as_dict(self):
        return {"created": list(self.created), "updated": list(self.updated), "removed": list(self.removed)}

    def __repr__(self):
        return "Changes(created=%r, updated=%r, removed=%r)" % (self.created, self.updated, self.removed)


class FileChange(object):
    """A file persist() wants: ``new`` None removes it; ``mode`` is for a new file."""

    def __init__(self, path, old, new, mode=0o644):
        self.path, self.old, self.new, self.mode = path, old, new, mode

    @property
    def id(self):
        return "file:%s" % self.path


class Backend(object):
    """Base of the backends; see the module docstring for the steps. ``name`` is the firewall's
    name (messages), ``owned`` the id of what the backend owns as a whole (e.g. table:inet ocs_edge)."""

    platform = None
    owned = None

    def __init__(self, name):
        self.name = name

    def desired(self, firewall):
        raise NotImplementedError

    def read_live(self):
        raise NotImplementedError

    def compare(self, desired, live):
        raise NotImplementedError

    def render(self, state):
        raise NotImplementedError

    def validate(self, desired, live):
        """Override when the platform can check a change without applying it."""

    def apply(self, desired, live):
        raise NotImplementedError

    def persist(self, desired):
        """Override when the live rules do not survive a reboot by themselves."""
        return []

    def remove(self, live):
        raise NotImplementedError

    def owned_objects(self, live):
        """What remove(live) deletes, as <kind>:<name> ids."""
        return [self.owned]

    def extras(self, desired, live):
        """Backend-specific result keys (the applied script, ...)."""
        return {}

    def preflight(self, firewall, desired, live):
        """Look at what the backend does not own (other software's rules, NAT) before anything is
        changed, in check mode too -> (fatal messages, warnings, result keys)."""
        return [], [], {}

    def after_apply(self, desired, live, check_mode):
        """After the new rules are in force (check mode: would be) -> (warnings, result keys);
        e.g. the conntrack entries of connections the correction no longer allows."""
        return [], {}

    def persist_files(self):
        """The files persist() writes (their directories get stale temporary files removed)."""
        return []


# --------------------------------------------------------------------------- rules diff

def rule_changes(desired, live, key, label):
    """The multiset rule diff of every backend.

    ``desired`` and ``live``: {chain: [rule dict]}; a desired rule has an "id", a live rule gets
    the id of the desired rule with the same chain and comment, else ``label(chain, rule)``.
    ``key(rule)`` is what makes two rules equal. An id only desired is created, only live is
    removed, in both with other rules (or counts) is updated; a chain holding the same rules in
    another order is updated as chain:<name>.
    """
    ids = {}
    for chain, rules in desired.items():
        for rule in rules:
            ids.setdefault((chain, rule.get("comment")), rule["id"])

    def tally(state):
        out = OrderedDict()
        for chain, rules in state.items():
            for rule in rules:
                rid = rule.get("id") or ids.get((chain, rule.get("comment"))) or label(chain, rule)
                out.setdefault(rid, Counter())[(chain, key(rule))] += 1
        return out

    want, have = tally(desired), tally(live)
    changes = Changes(created=[i for i in want if i not in have],
                      updated=[i for i in want if i in have and want[i] != have[i]],
                      removed=[i for i in have if i not in want])
    for chain, rules in desired.items():
        lrules = live.get(chain)
        keys, lkeys = [key(r) for r in rules], [key(r) for r in lrules or []]
        if lrules is not None and keys != lkeys and Counter(keys) == Counter(lkeys):
            changes.add(updated=["chain:%s" % chain])
    return changes


# --------------------------------------------------------------------------- the driver

def _diff(backend, desired, live, files, header):
    diffs = [{"before_header": "live %s" % header, "after_header": "desired %s" % header if desired is not None
              else "absent", "before": backend.render(live), "after": backend.render(desired)}]
    diffs += [{"before_header": f.path, "after_header": f.path, "before": f.old or "", "after": f.new or ""}
              for f in files]
    return diffs


def _file_changes(files):
    changes = Changes()
    for f in files:
        if f.new is None:
            changes.add(removed=[f.id])
        elif f.old is None:
            changes.add(created=[f.id])
        else:
            changes.add(updated=[f.id])
    return changes


def _failed(backend, exc, tail=STILL_IN_FORCE):
    msg = str(exc)
    if not msg.startswith("firewall "):
        msg = "%s%s" % (where(backend.name, ""), msg)
    return FirewallError("%s\n%s" % (msg, tail) if tail else msg)


def write_files(backend, files, applied=True):
    """Write the persisted files; a failure says what is in force now and what boots."""
    done = []
    for f in files:
        try:
            if f.new is None:
                if os.path.exists(f.path):
                    os.unlink(f.path)
            else:
                write_atomic(f.path, f.new, f.mode)
        except (IOError, OSError) as exc:
            raise FirewallError("%s%s; writing %s failed: %s (written before it: %s). At the next boot the "
                                "previous content of %s is loaded."
                                % (where(backend.name, ""), IN_FORCE if applied else
                                   "The live rules were already as desired", f.path, exc,
                                   ", ".join(done) or "nothing", f.path))
        done.append(f.path)


def _absent(backend, live, check_mode):
    files = backend.persist(None)
    changes = _file_changes(files)
    if live is not None:
        changes.add(removed=backend.owned_objects(live))
    result = dict(changes.as_dict(), changed=changes.changed, warnings=[], **backend.extras(None, live))
    if changes.changed:
        result["diff"] = _diff(backend, None, live, files, backend.owned)
    if check_mode or not changes.changed:
        return result
    if live is not None:
        try:
            backend.remove(live)
        except FirewallError as exc:
            raise _failed(backend, exc)
    write_files(backend, files)
    return result


def enforce(backend, firewall, state="present", check_mode=False):
    """Bring the backend's owned part to ``firewall`` (or remove it: state absent) -> result dict.

    Order: parse and compare (nothing touched on an error), validate with the platform's tool,
    stop here in check mode, apply in one transaction, read back (it must compare equal), then
    persist. Raises FirewallError whose message says what is still in force.
    """
    try:
        live = backend.read_live()
    except FirewallError as exc:
        raise _failed(backend, exc, tail=None)
    if state == "absent":
        return _absent(backend, live, check_mode)
    if firewall is None:
        raise FirewallError("%sgive either firewall (the FIREWALL dict) or rules" % where(backend.name, ""))
    try:
        desired = backend.desired(firewall)
        files = backend.persist(desired)
    except FirewallError as exc:
        raise FirewallError("%s (nothing was changed; the previous rule set is still in force)" % exc)
    fatal, warnings, found = backend.preflight(firewall, desired, live)
    if fatal:
        raise FirewallError("%sother software's rules contradict the policy; nothing was changed:\n%s"
                            % (where(backend.name, ""), "\n".join(fatal)))
    changes = backend.compare(desired, live)
    live_changed = changes.changed
    changes.add(**_file_changes(files).as_dict())
    result = dict(changes.as_dict(), changed=changes.changed, warnings=list(warnings),
                  **dict(backend.extras(desired, live), **found))
    if changes.changed:
        result["diff"] = _diff(backend, desired, live, files, backend.owned)
    if live_changed:
        try:
            backend.validate(desired, live)
        except FirewallError as exc:
            raise _failed(backend, exc)
    if check_mode or not changes.changed:
        if check_mode and live_changed:
            _after_apply(backend, desired, live, True, result)
        return result
    if live_changed:
        _apply_and_read_back(backend, desired, live)
        _after_apply(backend, desired, live, False, result)
    write_files(backend, files, applied=live_changed)
    return result


def _after_apply(backend, desired, live, check_mode, result):
    warnings, found = backend.after_apply(desired, live, check_mode)
    result["warnings"].extend(warnings)
    result.update(found)


def _apply_and_read_back(backend, desired, live):
    try:
        backend.apply(desired, live)
    except FirewallError as exc:
        raise _failed(backend, exc)
    try:
        after = backend.read_live()
    except FirewallError as exc:
        raise _failed(backend, exc, tail="%s, but reading it back failed; the persisted file was not written "
                                         "(the boot configuration still loads the previous rule set)." % IN_FORCE)
    still = backend.compare(desired, after)
    if still.changed:
        raise FirewallError("%s%s: %s, but it reads back different from the desired set (%r); the persisted "
                            "file was not written (the boot configuration still loads the previous rule set)"
                            % (where(backend.name, ""), backend.owned, IN_FORCE, still))


def exit_module(module, result, failed_msg=None):
    """exit_json / fail_json (failed_msg) with the result's warnings handed to module.warn:
    Ansible returns them as the result's ``warnings`` (passing the key itself is deprecated)."""
    result = dict(result)
    for warning in result.pop("warnings", None) or []:
        module.warn(warning)
    if failed_msg is not None:
        module.fail_json(msg=failed_msg, **result)
    module.exit_json(**result)


def run_module(module, backend, firewall):
    """The whole main() of a ruleset module: under the run lock (one run per host at a time),
    remove what killed runs left, enforce, then exit_json or fail_json."""
    try:
        with lock.RunLock(timeout=module.params.get("lock_timeout") or 120):
            if not module.check_mode:
                remove_stale_temp(backend.persist_files())
            result = enforce(backend, firewall, module.params["state"], module.check_mode)
    except (FirewallError, lock.LockTimeout) as exc:
        exit_module(module, dict(changed=False, created=[], updated=[], removed=[]), failed_msg=str(exc))
    exit_module(module, result)


# --------------------------------------------------------------------------- module options

def ruleset_argument_spec(**backend_options):
    """argument_spec of a Linux ruleset module: the FIREWALL options every backend takes plus
    the backend's own (``backend_options``, name -> spec)."""
    spec = dict(
        firewall=dict(type="dict"),
        rules=dict(type="list", elements="dict"),
        mode=dict(type="str", choices=["network", "host"], default="network"),
        management=dict(type="dict"),
        interfaces=dict(type="dict", default={}),
        name=dict(type="str", default="firewall"),
        input_policy=dict(type="str", choices=["drop", "accept"], default="drop"),
        output_policy=dict(type="str", choices=["accept", "drop"], default="accept"),
        allow_icmp=dict(type="bool", default=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        lock_timeout=dict(type="int", default=120),
        conntrack_flush=dict(type="bool", default=True),
        nat_check=dict(type="str", choices=["fail", "warn"], default="fail"),
    )
    spec.update(backend_options)
    return spec


def firewall_param(params, platform):
    """The FIREWALL a ruleset module enforces: ``firewall``, or one built from the hand-written
    options (mode, interfaces, management, rules); None when neither is given."""
    if params["firewall"] is not None:
        return params["firewall"]
    if params["rules"] is None:
        return None
    return {"mode": params["mode"], "platform": platform, "interfaces": params["interfaces"],
            "management": params["management"], "rules": params["rules"]}


# --------------------------------------------------------------------------- text and files

def printable(text):
    """``text`` with every non-printable character (newline, NUL, U+2028, ...) escaped as
    Python does (``\\n``): safe to put on one line of a script or a comment."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def check_path(path, name, var):
    """A path written into a boot file or used to write one: absolute, printable, no quote or
    backslash (nft's include "..." has no escaping), else FirewallError. '' (not persisted) passes."""
    if not path:
        return path
    path = str(path)
    if not path.startswith("/") or any(not c.isprintable() for c in path) or '"' in path or "\\" in path:
        raise FirewallError("%s: %r must be an absolute path of printable characters without '\"' or '\\' "
                            "(nothing was changed)" % (where(name, var), path))
    return path


def remove_stale_temp(paths):
    """Remove what killed runs left behind: ``.ocs_edge.*`` temporary files of write_atomic beside
    the persisted files and the ``/tmp/ocs_edge.*.nft`` scripts of older versions. Called only
    under the run lock: then no other run is writing them. -> removed paths."""
    import glob
    patterns = ["/tmp/ocs_edge.*.nft"]
    for path in paths:
        if path:
            patterns.append(os.path.join(os.path.dirname(os.path.abspath(path)), ".ocs_edge.*"))
    removed = []
    for pattern in patterns:
        for stale in glob.glob(pattern):
            try:
                os.unlink(stale)
                removed.append(stale)
            except OSError:
                pass
    return removed


def unified(before, after, before_name="live", after_name="desired"):
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), before_name, after_name))


def numbered(script):
    """The script with line numbers, for error messages."""
    return "\n".join("%4d  %s" % (i, line) for i, line in enumerate(script.splitlines(), 1))


def read_text(path):
    """A text file's content, or None when it cannot be read (absent)."""
    try:
        with open(path) as fh:
            return fh.read()
    except (IOError, OSError):
        return None


def write_atomic(path, data, mode=0o644, keep_mode=True):
    """Write ``data`` (str or bytes) via a temporary file in the same directory, fsync, rename.

    With ``keep_mode`` an existing file keeps its mode and ``mode`` is for a new file; without,
    the file always gets ``mode``. A missing directory is created (0755).
    """
    if keep_mode:
        try:
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            pass
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(prefix=".ocs_edge.", dir=directory)
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
