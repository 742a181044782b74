"""`nvr bench inference` runs shared-memory frames through the engine and reports its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from hailo_support import PROJECT_ROOT, SCRFD_HEF, double_subprocess_env


def test_bench_inference_reports_fps_and_cpu(asset: Callable[[str], Path], tmp_path: Path) -> None:
    env = double_subprocess_env(tmp_path, replay="1", latency_ms="1")
    args = ["bench", "inference", "--backend", "hailo", "--hef", str(asset(SCRFD_HEF)), "--frames", "300"]
    args += ["--warmup", "50", "--image", str(asset("images/insightface_t1.jpg")), "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "nvr", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["frames"] == 300 and figures["fps"] > 0 and figures["cpu_ms_per_frame"] > 0
    assert figures["faces_per_frame"] == 6.0  # the postprocessor ran on every measured frame
    assert figures["failed"] == 0
