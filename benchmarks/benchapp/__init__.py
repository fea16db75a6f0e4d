"""The tiny Django app that the benchmarks install: one model, one view, a naive router."""
