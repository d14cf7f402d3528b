"""Firewalls reached over a real network: a controller namespace and firewall namespaces joined by
veth links, each firewall running its own sshd, so Ansible connects over SSH as in production and a
rule set can cut (or keep) the management path. ``ssh_lab(netns, tmp_path, names)`` builds it;
``controller_run(lab, argv)`` runs a command (ansible-playbook, ocs-pipeline) in the controller.
"""
import os
import subprocess
import sys
import uuid
from pathlib import Path

from netns_harness import run

SSHD = "/usr/sbin/sshd"


def _keys(tmp_path):
    key = tmp_path / "id_ed25519"
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hostkey")])
        (tmp_path / "authorized_keys").write_text((tmp_path / "id_ed25519.pub").read_text())
    return key


def _sshd(ns, tmp_path, address):
    cfg = tmp_path / ("sshd-%s.conf" % ns)
    cfg.write_text("\n".join([
        "Port 22", "ListenAddress %s" % address, "HostKey %s" % (tmp_path / "hostkey"),
        "AuthorizedKeysFile %s" % (tmp_path / "authorized_keys"), "PermitRootLogin prohibit-password",
        "PasswordAuthentication no", "StrictModes no", "UsePAM no", "PidFile none",
        "Subsystem sftp internal-sftp", "LogLevel ERROR"]) + "\n")
    os.makedirs("/run/sshd", exist_ok=True)
    return subprocess.Popen(["ip", "netns", "exec", ns, SSHD, "-D", "-e", "-f", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ssh_lab(netns, tmp_path, names):
    """-> {"controller": ns, "hosts": {name: {"ns", "address", "vars"}}, "procs": [sshd]}; firewall i
    is 10.77.<i>.2, the controller 10.77.<i>.1 (one /24 link each)."""
    controller = netns()
    key = _keys(tmp_path)
    lab = {"controller": controller, "hosts": {}, "procs": []}
    for i, name in enumerate(names, start=1):
        ns = netns()
        tag = uuid.uuid4().hex[:6]
        run(["ip", "link", "add", "c" + tag, "netns", controller, "type", "veth", "peer", "name", "f" + tag, "netns", ns])
        run(["ip", "-n", controller, "addr", "add", "10.77.%d.1/24" % i, "dev", "c" + tag])
        run(["ip", "-n", ns, "addr", "add", "10.77.%d.2/24" % i, "dev", "f" + tag])
        run(["ip", "-n", controller, "link", "set", "c" + tag, "up"])
        run(["ip", "-n", ns, "link", "set", "f" + tag, "up"])
        address = "10.77.%d.2" % i
        lab["procs"].append(_sshd(ns, tmp_path, address))
        lab["hosts"][name] = {"ns": ns, "address": address, "controller_address": "10.77.%d.1" % i, "vars": {
            "ansible_host": address, "ansible_user": "root", "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o ConnectTimeout=3",
            "ansible_python_interpreter": sys.executable}}
    for host in lab["hosts"].values():
        _wait_ssh(controller, host["address"])
    return lab


def _wait_ssh(controller, address):
    probe = "import socket,time\nfor _ in range(50):\n try:\n  socket.create_connection((%r,22),0.5).close(); break\n" \
            " except OSError: time.sleep(0.1)\n" % address
    run(["ip", "netns", "exec", controller, sys.executable, "-c", probe])


def stop(lab):
    """Stop the sshd listeners and every process left in the firewall namespaces (sessions, rollback jobs)."""
    for proc in lab["procs"]:
        proc.kill()
        proc.wait()
    for host in lab["hosts"].values():
        for pid in run(["ip", "netns", "pids", host["ns"]], check=False).stdout.split():
            try:
                os.kill(int(pid), 9)
            except OSError:
                pass


def controller_run(lab, argv, cwd, env=None, timeout=900):
    """Run ``argv`` inside the controller namespace (PATH with this Python's bin first)."""
    env = dict(os.environ, **(env or {}))
    env["PATH"] = "%s:%s" % (os.path.dirname(sys.executable), env.get("PATH", ""))
    env["PWD"] = str(cwd)
    # SSH control sockets of this lab only: a master from another lab with the same address must not be reused
    env.setdefault("ANSIBLE_SSH_CONTROL_PATH_DIR", str(Path(lab["hosts"][next(iter(lab["hosts"]))]["vars"]["ansible_ssh_private_key_file"]).parent / "cp"))
    return subprocess.run(["ip", "netns", "exec", lab["controller"]] + list(argv), cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
