"""The clock: fires each occurrence once, at its instant, in one process or across many."""
