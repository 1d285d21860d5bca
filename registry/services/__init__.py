"""Use cases shared by the API, the CLI's server commands and the workers.

Services are stateless functions: they take the session (and the blob store where needed), raise
:mod:`registry.errors`, and never commit — the caller owns the transaction.
"""
