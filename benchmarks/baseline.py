"""Add the in-process sentence-transformers baseline to a saved bench report.

run.sh calls this after stopping the server: the baseline then has the machine to itself, as the
server had during its measurements (an idle vLLM on the same 2 cores still costs the baseline CPU).
It encodes exactly the texts the benchmark sent (same generator, same batch sizes).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

from poolserve.bench.baseline import sentence_transformers_baseline
from poolserve.bench.metrics import report_from_json, report_to_json
from poolserve.bench.workload import Workload, make_query


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("report", type=Path)
    p.add_argument("--model", required=True, help="model directory (or hub id)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch-size", default="1,32")
    p.add_argument("--input-tokens", type=int, default=128)
    p.add_argument("--seconds", type=float, default=20.0, help="minimum measuring time per batch size")
    a = p.parse_args()
    report = report_from_json(a.report.read_text(), str(a.report))
    load = os.getloadavg()
    fn = sentence_transformers_baseline(a.model, task=report.task, dtype=a.dtype, min_texts=64,
                                        min_time_s=a.seconds, max_time_s=3 * a.seconds)
    results = []
    for b in (int(x) for x in a.batch_size.split(",")):
        wl = Workload(report.task, None, a.input_tokens, b)  # type: ignore[arg-type]
        results.append(fn(wl.pool_texts(), b, make_query() if report.task == "score" else None))
    note = (f"baseline: sentence-transformers {a.dtype}, in-process, server stopped, "
            f"load {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} at its start")
    a.report.write_text(report_to_json(replace(report, baseline=tuple(results), notes=(*report.notes, note))))
    for r in results:
        print(f"{a.report.stem}: baseline b={r.batch_size} {r.dtype}: {r.texts_per_s:.1f} texts/s")


if __name__ == "__main__":
    main()
