"""Run ``ltsearch bench`` without the ltsearch CLI: ``python benchmarks/bench.py [--smoke] [--json] ...``
(the same options as ``ltsearch bench``; ``ltsearch/bench/`` has one module per measurement)."""

import typer

from ltsearch.bench.cli import bench

app = typer.Typer(add_completion=False)
app.callback()(lambda: None)
app.command("bench")(bench)

if __name__ == "__main__":
    import sys

    sys.argv[1:1] = ["bench"]
    app()
