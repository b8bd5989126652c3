"""Write the report of benchmark rows read out of a running process (``dump_running_benchmark``).

The provenance is the run's: the commit is the last one before the process started (the
code it imported), the date its start, and ``recovered`` says which rows were finished.

    python benchmarks/runs/recovered_report.py \\
        benchmarks/results/small_data_v2_mlp_mlp2.dump.json \\
        benchmarks/results/small_data_v2_mlp_mlp2
"""

import json
import subprocess
import sys
import time
from datetime import UTC, datetime

from sklearn_mln.benchmark import write_benchmark_report

if __name__ == "__main__":
    source, output = sys.argv[1:3]
    result = json.loads(open(source).read())
    dumped = datetime.strptime(result["provenance"]["date"], "%Y-%m-%dT%H:%M:%SZ")
    started = dumped.replace(tzinfo=UTC).timestamp() - result.pop("wall_seconds_so_far")
    commit = subprocess.run(
        ["git", "rev-list", "-1", f"--before={int(started)}", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    rows = ", ".join(f"{e['architecture']} k={e['k']}" for e in result["results"])
    result["provenance"].update(
        commit=commit,
        date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        wall_seconds=round(dumped.replace(tzinfo=UTC).timestamp() - started, 1),
        recovered=f"rows {rows} read out of the running process ({source}); the k = 20 and "
        "50 rows did not finish within the session",
    )
    result["settings"]["dataset"] = "fashion-mnist"
    result["settings"]["ks"] = sorted({e["k"] for e in result["results"]})
    write_benchmark_report(result, output)
    print(f"Wrote {output}: {rows}; commit {commit[:8]}.")
