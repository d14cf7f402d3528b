"""Stand-in for the get-pip bootstrap script ansible-test downloads from its CI file server.

ansible-test runs it as ``python get_pip_X.py [pip install options] pip==X ...`` in an empty
virtual environment. That server is not reachable from the project's machines; the standard
library's ensurepip gives the same result (pip from the wheel bundled with Python, then the
requested versions from the package index). scripts/ci-installed puts it in ansible-test's cache.
"""
import ensurepip
import importlib
import os
import runpy
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

ensurepip.bootstrap()
importlib.invalidate_caches()
os.environ.pop("PIP_CONFIG_FILE", None)  # ensurepip sets it to os.devnull: read the machine's pip.conf again
sys.argv = ["pip", "install"] + [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
