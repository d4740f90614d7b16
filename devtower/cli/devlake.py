"""`overcloud devlake run`: consume the metric topics into InfluxDB."""

from __future__ import annotations

import sys
import threading
from typing import Annotated

import typer

from devtower.cli.common import console, install_signal_handlers, settings, setup_logging

app = typer.Typer(help="DevLake: store metrics in InfluxDB.", no_args_is_help=True)


@app.command()
def run(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Consume samples into InfluxDB until SIGTERM/SIGINT; run several to share the load."""
    from devlake.consumer import DevLake, KafkaDeadLetters
    from devlake.sinks import make_sink
    from overcloud.bus import ensure_topics, make_consumer, metrics_topic
    from overcloud.samples import Layer

    s = settings()
    setup_logging(verbose)
    ensure_topics(s)
    sink = make_sink(s.influx, who="devlake")  # writes only: see overcloud.influxauth
    topics = [metrics_topic(s, layer) for layer in Layer]
    consumer = make_consumer(s, topics, s.devlake.group)
    lake = DevLake(s, consumer, sink, KafkaDeadLetters(s))
    stop = threading.Event()
    install_signal_handlers(stop)
    console.print(
        f"devlake: {s.kafka.bootstrap} (group {s.devlake.group}) → {s.influx.base_url} "
        f"(dialect {s.influx.dialect})"
    )
    sys.stdout.flush()  # the banner is how `services up` sees it ready
    try:
        lake.run(stop)
    finally:
        consumer.close(autocommit=False)
        sink.close()
    st = lake.stats
    console.print(
        f"devlake stopped: {st.points} points in {st.writes} writes, "
        f"{st.deadlettered} dead-lettered"
    )
