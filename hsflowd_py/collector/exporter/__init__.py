"""``--prometheus``: the collector's decoded counters and top flows as Prometheus metrics.

``metricspec`` derives metric names and types from the record table,
``state`` keeps what agents sent (bounded, expiring), ``topflows`` and
``flowkey`` turn flow samples into a bounded set of top-N flow series, and
``server`` is the only part that touches ``prometheus_client``.
"""
