"""`overcloud services`: the catalogue of local services and what starts them (the wiring
of every process, so it sits at the top)."""
