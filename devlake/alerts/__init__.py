"""Alert rules evaluated on the metric stream, not by polling the database.

Why streaming: Aodh evaluates every 60 s and Grafana/Kapacitor re-query the store on a
schedule, so detection is at least one evaluation period late and costs a query per rule.
The samples already pass through Kafka; an evaluator in its own consumer group sees each one
as it arrives and keeps a tiny state machine per (rule, group), so detection latency is the
rule's `for` plus the sampling interval, and cost is per sample, not per query.

- `rules`: the YAML rule format (pydantic; every problem at once as FILE:LINE: path: message),
  the built-in rules (`node-overloaded`) and how a rule file overrides them.
- `evaluator`: the pure state machine inactive → pending → firing → resolved (hysteresis,
  `for`, no-data), fed samples and clock ticks; returns transitions, performs no I/O.
- `outbox`: every transition becomes de-duplicated deliveries (events, webhook, Alertmanager,
  the `alerts` measurement) in a SQLite outbox, delivered with retries by one worker per channel.
- `runner`: the Kafka loop that feeds the evaluator and commits offsets after state is saved.
- `grafana`: the same rules as Grafana alert-rule provisioning.
- `backtest`: `alerts test` — the rules over recent DevLake data (InfluxQL).
"""
