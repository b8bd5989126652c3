"""Read the rows a running benchmark has finished out of its process (run inside it).

The MLP run of ``small_data_v2.py`` was started with code that wrote its report only at the
end; when its k = 20 and 50 rows could not finish within the session, the finished rows
were read out of the live process with::

    gdb -p PID -batch -ex 'call (int)PyGILState_Ensure()' \
        -ex "call (int)PyRun_SimpleString(\"exec(open(DUMP).read())\")" \
        -ex 'call (void)PyGILState_Release($1)'

with DUMP the quoted path of this file. It writes ``/tmp/mlp_partial.json``;
``recovered_report.py`` turns it into the report. The benchmark now writes its report
after every row, so this is not needed again.
"""

import json
import sys
import time
import traceback

try:
    import sklearn_mln.benchmark as _b

    frame = sys._current_frames()[__import__("threading").main_thread().ident]
    f = frame
    while f is not None and f.f_code.co_name != "small_data_benchmark":
        f = f.f_back
    L = f.f_locals
    from sklearn_mln._provenance import provenance

    record = provenance(
        seed=int(L["random_state"]),
        threads=1,
        command="python benchmarks/runs/small_data_v2.py mlp mlp2",
    )
    result = {
        "settings": {
            "architectures": {a: _b.ARCHITECTURES[a][0] for a in L["architectures"]},
            "baselines": {
                n: {k: list(v) for k, v in _b.CLASSICAL_GRIDS[n].items()} for n in L["baselines"]
            },
            "losses": {n: repr(l) for n, l in L["losses"].items()},
            "ks": [int(k) for k in L["ks"]],
            "n_tasks": int(L["n_tasks"]),
            "n_tuning_tasks": int(L["n_tuning_tasks"]),
            "grid_lr": sorted(float(v) for v in L["grid_lr"]),
            "grid_steps": sorted(int(v) for v in L["grid_steps"]),
            "max_lr_extensions": int(L["max_lr_extensions"]),
            "n_screening_tasks": int(min(L["n_screening_tasks"], L["n_tuning_tasks"])),
            "n_finalists": int(L["n_finalists"]),
            "momentum": float(L["momentum"]),
            "random_state": int(L["random_state"]),
            "n_pool": int(len(L["y_pool"])),
            "n_test": int(len(L["y_test"])),
            "baseline_rule": "the classical loss with the best tuning (meta-train) score",
        },
        "results": list(L["results"]),
        "provenance": record,
        "wall_seconds_so_far": time.perf_counter() - L["started"],
    }
    with open("/tmp/mlp_partial.json", "w") as fh:
        json.dump(result, fh, indent=1)
except Exception:
    with open("/tmp/mlp_partial.err", "w") as fh:
        fh.write(traceback.format_exc())
