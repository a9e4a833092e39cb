from ltsearch.cli import app

app(prog_name="ltsearch")
