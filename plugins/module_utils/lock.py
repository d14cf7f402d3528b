# -*- coding: utf-8 -*-
# Copyright: ocs.edge_firewall contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run at a time per host: an exclusive file lock held from reading the live rules to
writing the persisted file, so two runs (two controllers, a retry) cannot interleave their
read-compare-apply steps (they did: two concurrent iptables runs left four jumps).

The lock is flock(2) on an open file: it is released by the kernel when the process ends,
however it ends, so a killed run never leaves a stale lock (the file itself is harmless).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import os
import time

LOCK_NAME = "ocs_edge_firewall.lock"


def default_path():
    """/run/lock/<name> (tmpfs, root only), else /run, else /tmp."""
    for directory in ("/run/lock", "/run", "/tmp"):
        if os.path.isdir(directory) and os.access(directory, os.W_OK):
            return os.path.join(directory, LOCK_NAME)
    return os.path.join("/tmp", LOCK_NAME)


class LockTimeout(Exception):
    """Another run held the lock for longer than the timeout."""


class RunLock(object):
    """``with RunLock(path, timeout): ...`` -- waits up to ``timeout`` seconds for the lock."""

    def __init__(self, path=None, timeout=120.0, poll=0.2):
        self.path = path or default_path()
        self.timeout = timeout
        self.poll = poll
        self._fd = None

    def __enter__(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.time() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (IOError, OSError) as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.time() >= deadline:
                    os.close(fd)
                    raise LockTimeout("another ocs.edge_firewall run holds %s (waited %ss); nothing was "
                                      "changed, run again when it has finished" % (self.path, self.timeout))
                time.sleep(self.poll)
        self._fd = fd
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)          # closing the descriptor releases the flock
            self._fd = None
        return False
