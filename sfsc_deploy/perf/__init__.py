"""Performance: parameters and MACs, latency benchmarks and their reports, device tables, planning."""
