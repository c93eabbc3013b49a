"""``bench overhead``'s in-process path: no gevent MonkeyPatchWarning (ssl patched after import)."""

from __future__ import annotations

import subprocess
import sys

# What ``bench overhead`` imports (the CLI, so redis-py and ssl), then the harness cost measured
# as the command does; gevent's warning is turned into an error in this process.
SCRIPT = """
import warnings
from gevent.monkey import MonkeyPatchWarning
warnings.simplefilter("error", MonkeyPatchWarning)
import bench.cli
from bench.overhead import harness_cost_in_child
costs = harness_cost_in_child(200)
assert set(costs) == {"timer", "hdr_record", "locust_event", "audit_per_task"}, costs
assert all(v > 0 for v in costs.values()), costs
"""


def test_overhead_harness_cost_prints_no_monkey_patch_warning() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert "MonkeyPatchWarning" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
