"""Console tables and progress, plots: plain data in."""
