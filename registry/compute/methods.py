"""The merge methods, by name: pure data, so the API can validate a job without importing torch."""

METHODS: tuple[str, ...] = (
    "sum",
    "cat",
    "linear",
    "svd",
    "ties",
    "ties_svd",
    "dare_linear",
    "dare_ties",
    "dare_linear_svd",
    "dare_ties_svd",
    "magnitude_prune",
    "magnitude_prune_svd",
)
MAJORITY_SIGN_METHODS = ("total", "frequency")
