"""`python -m ltsearch` and the `ltsearch` console script.

Importing the CLI pulls in torch, Ray and pandas (seconds on a busy machine); a Ctrl-C in that
window is one line and exit 130 like any other interrupt, not a traceback from inside an import.
"""

import sys


def main() -> None:
    try:
        from ltsearch.cli import app
    except KeyboardInterrupt:
        print("interrupted: ltsearch was still starting; nothing was written", file=sys.stderr)
        sys.exit(130)
    app(prog_name="ltsearch")


if __name__ == "__main__":
    main()
