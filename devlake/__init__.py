"""DevLake: Kafka consumers that store samples in InfluxDB, one database per OverCloud."""
