"""Run ``ltsearch bench`` without the CLI wiring: ``python benchmarks/bench.py [--smoke] [--json] ...``
(the same options as ``ltsearch bench``; see ``ltsearch/bench.py`` for what is measured)."""

from ltsearch.bench import _standalone

if __name__ == "__main__":
    import sys

    sys.argv[1:1] = ["bench"]
    _standalone()
