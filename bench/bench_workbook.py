"""Time and memory of write_workbook on a synthetic 100,000-row report.

Targets: at most 25 s and 300 MB peak RSS. The measurement runs in a fresh subprocess so that the
peak RSS (ru_maxrss) belongs to this workload alone; it includes the Report held in memory, and
the RSS just before writing is printed too, so the writer's own share is the difference.

    .venv/bin/python bench/bench_workbook.py [--rows 100000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 25.0
TARGET_MB = 300.0


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(rows: int, out: Path) -> None:
    """Build the report, write the workbook, print one JSON line of figures."""
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    from workbook_fixtures import synthetic_report

    from recon.workbook import write_workbook

    started = time.perf_counter()
    report = synthetic_report(rows)
    build_s = time.perf_counter() - started
    rss_before = _rss_mb()
    path = out / "bench.xlsx"
    started = time.perf_counter()
    digest = write_workbook(report, path)
    write_s = time.perf_counter() - started
    print(
        json.dumps(
            {
                "rows": rows,
                "exceptions": sum(1 for r in report.rows if r.outcome != "captured"),
                "build_s": round(build_s, 2),
                "write_s": round(write_s, 2),
                "rss_before_write_mb": round(rss_before, 1),
                "peak_rss_mb": round(_rss_mb(), 1),
                "file_mb": round(path.stat().st_size / 2**20, 1),
                "sha256": digest,
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--out", type=Path, help="folder for the workbook (default: a temp dir)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.rows, args.out)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-workbook-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [sys.executable, __file__, "--child", "--rows", str(args.rows), "--out", str(out)],
            capture_output=True,
            text=True,
            check=True,
        )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    ok = figures["write_s"] <= TARGET_SECONDS and figures["peak_rss_mb"] <= TARGET_MB
    print(
        f"write_workbook, {figures['rows']:,} rows ({figures['exceptions']:,} exceptions): "
        f"{figures['write_s']:.1f} s (target {TARGET_SECONDS:.0f} s), "
        f"peak RSS {figures['peak_rss_mb']:.0f} MB (target {TARGET_MB:.0f} MB; "
        f"{figures['rss_before_write_mb']:.0f} MB before writing), "
        f"file {figures['file_mb']} MB -> {'OK' if ok else 'OVER TARGET'}"
    )
    print(json.dumps(figures))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
