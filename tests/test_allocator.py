"""glibc keeps the gateway's large buffers for reuse (imagegate/allocator.py). Each case
runs in a fresh interpreter: the thresholds are process-wide."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc",
                                reason="the thresholds are glibc's")

# buffers of 4 MB and a little more each time, as images of different sizes are: each
# larger than any freed before, so glibc's own adjustment never keeps one
FAULTS_PER_BUFFER = """
import resource, sys
from imagegate.allocator import keep_large_buffers
print(keep_large_buffers() if sys.argv[1] == "tuned" else "-")
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
MB = 1 << 20
x = b"\\1" * (4 * MB); del x
before = faults()
for i in range(20):
    x = b"\\1" * (4 * MB + i * 64 * 1024); del x
print((faults() - before) / 20)
"""


def run(mode: str, **env: str) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", FAULTS_PER_BUFFER, mode], check=True,
                         capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items()
                              if not k.startswith("MALLOC_")} | env)
    applied, faults = out.stdout.split()
    return applied, float(faults)


def test_large_buffers_are_reused_once_tuned() -> None:
    assert run("default")[1] > 900  # a 4 MB buffer is 1,024 fresh pages
    applied, faults = run("tuned")
    assert applied == "True" and faults < 100


def test_an_operators_malloc_settings_stand() -> None:
    applied, faults = run("tuned", MALLOC_TRIM_THRESHOLD_="1048576")
    assert applied == "False"
