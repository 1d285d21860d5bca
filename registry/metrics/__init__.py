"""Prometheus metrics: instruments recorded per request, totals read from the database at scrape time.

``instruments`` and ``middleware`` count what passes through this process; ``exposition`` renders
``/metrics`` (every API process's instruments, through ``PROMETHEUS_MULTIPROC_DIR`` when ``lorareg
serve --workers N`` runs several); ``multiprocess`` sets that directory up before the workers start.
"""
