"""One module per scenario of the "Benchmarks" issue; each has ``run(ctx, ...) -> dict``."""
