"""Load and throughput scenarios (see bench/README.md). Figures are printed, never used to gate CI."""
