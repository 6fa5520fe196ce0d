"""bench's ProcessTreeMeter counts the CPU of a child that has exited and been reaped
(a replaced pool process), not only of the children alive when it looks."""

from __future__ import annotations

import subprocess
import sys

from return_notify.devtools.bench_paced import ProcessTreeMeter

# a parent that runs a child burning 0.6 s of CPU, waits for it (reaps it), then idles
_PARENT = """
import subprocess, sys, time
subprocess.run([sys.executable, "-c",
                "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.6: pass"])
print("reaped", flush=True)
time.sleep(30)
"""


def test_the_cpu_of_a_reaped_child_is_counted() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    meter = None
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "reaped"
        # the meter starts after the child is gone: it never saw it alive
        meter = ProcessTreeMeter(parent.pid)
        assert meter.cpu_s() >= 0.55
    finally:
        if meter is not None:
            meter.stop()
        parent.kill()
        parent.wait()
