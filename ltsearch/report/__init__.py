"""Reports that read a run's Parquet results: ``html.write_report`` (one run) and
``compare.write_compare`` (several runs). ``summary`` computes, ``figures`` draws (plotly)."""
