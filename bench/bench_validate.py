"""Benchmark of the input stage: read_table + validate over a 1,000,000-row CSV.

Target (issue 3): at most 20 s wall time and 1.5 GB peak RSS. Run from the repo root:

    .venv/bin/python bench/bench_validate.py [--rows N]

The input is written to bench/out/ (git-ignored) once and reused while its row count matches.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
import uuid
from pathlib import Path

from recon.ingest import read_table
from recon.schema import validate

OUT = Path(__file__).resolve().parent / "out"
CURRENCIES = ("EUR", "USD", "GBP", "JPY", "RUB", "PLN")
POS = "123e4567-e89b-12d3-a456-426614174000"


def make_input(rows: int) -> Path:
    """A realistic sheet: mixed currencies, some whole-hold rows, comments, URLs, pos ids."""
    path = OUT / f"orders-{rows}.csv"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(3)
    pos_ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(50)]
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("order_id,order_currency,charge_amount,comment,server_url,pos_id\n")
        for i in range(rows):
            currency = rng.choice(CURRENCIES)
            if rng.random() < 0.1:
                amount = ""
            elif currency == "JPY":
                amount = str(rng.randint(100, 500000))
            else:
                amount = f"{rng.randint(1, 99999)}.{rng.randint(0, 99):02d}"
            comment = f"invoice {i} for customer {rng.randint(1, 9999)}" if i % 3 else ""
            url = "https://shop.example.com/hooks/finline" if i % 5 == 0 else ""
            pos = rng.choice(pos_ids) if i % 2 else ""
            out.write(f"ORD-{i:09d},{currency},{amount},{comment},{url},{pos}\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    path = make_input(args.rows)
    start = time.perf_counter()
    table = read_table(path)
    read = time.perf_counter()
    batch = validate(table, default_pos_id=POS)
    done = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    size_mb = path.stat().st_size / 1e6
    print(f"input        {path.name}: {args.rows:,} rows, {size_mb:.0f} MB")
    print(f"read_table   {read - start:6.2f} s")
    print(f"validate     {done - read:6.2f} s")
    print(f"total        {done - start:6.2f} s   (target <= 20 s)")
    print(f"peak RSS     {peak_mb:6.0f} MB  (target <= 1536 MB)")
    print(f"orders       {len(batch.orders):,} valid, {len(batch.rejections):,} rejections")
    ok = done - start <= 20 and peak_mb <= 1536 and len(batch.orders) == args.rows
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
