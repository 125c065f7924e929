"""One memory point of the `scaling` scenario, in a fresh process (run by bench/scaling.py).

Argument: a JSON object {model, cache, config, batch, seq_len, threads}. Prints one JSON line:
{rss_start_mib, rss_loaded_mib, peak_rss_mib} or {skip: why}. Peak is VmHWM (Linux).
"""

import json
import resource
import sys
from pathlib import Path


def peak_rss() -> int:
    """This process's peak resident set (VmHWM), in bytes. (ru_maxrss is not used: on Linux it keeps
    the parent's peak across fork and exec, so every child would report the benchmark's own peak.)"""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> int:
    spec = json.loads(sys.argv[1])
    import psutil

    proc = psutil.Process()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pyner.cli.bench import load_bench

    load_bench()
    from pyner_bench import engines
    from pyner_bench.common import Skip
    from pyner_bench.models import resolve
    from pyner_bench.scaling import CONFIGS
    from pyner_bench.worstcase import make_runner

    start = proc.memory_info().rss
    try:
        model = resolve(spec["model"], Path(spec["cache"]))
        cfg = next(c for c in CONFIGS if c[0] == spec["config"])
        runner = make_runner(model, *cfg[1:], spec["threads"])
    except Skip as exc:
        print(json.dumps({"skip": str(exc)}))
        return 0
    loaded = proc.memory_info().rss
    data = engines.random_batch(spec["batch"], spec["seq_len"], vocab=model.dims["vocab"] or 30522)
    runner.run(runner.prepare(data))
    mib = 1 << 20
    print(json.dumps({"rss_start_mib": start / mib, "rss_loaded_mib": loaded / mib, "peak_rss_mib": peak_rss() / mib}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
