"""Publish one full run: copy its plots into bench/figures/ and print BENCHMARKS.md's measured part.

    .venv/bin/python bench/publish.py bench/results/<timestamp> > /tmp/measured.md

The printed Markdown (machine, command, targets with their ratios, every table) comes from the
run's results.json through the same code as the run's summary.md, so BENCHMARKS.md and the run
cannot disagree; the analysis around it is written by hand.
"""

import shutil
import sys
from pathlib import Path


def main() -> int:
    run = Path(sys.argv[1]).resolve()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pyner.cli.bench import load_bench

    load_bench()
    import json

    from pyner_bench.common import Results
    from pyner_bench.report import summary_markdown

    from pyner_bench.report import make_plots

    figures = Path(__file__).resolve().parent / "figures"
    figures.mkdir(exist_ok=True)
    results = Results.__new__(Results)
    results.out = run
    results.data = json.loads((run / "results.json").read_text(encoding="utf-8"))
    make_plots(results)  # re-drawn from results.json with the current plotting code
    for png in sorted(run.glob("fig_*.png")):
        shutil.copyfile(png, figures / png.name)
    text = summary_markdown(results).replace("](fig_", "](bench/figures/fig_")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
