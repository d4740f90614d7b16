"""The DevTower: each developer's door to their own OverClouds (API, CLI, page) and the
wiring of the processes. The top layer: it may use every package below it."""
