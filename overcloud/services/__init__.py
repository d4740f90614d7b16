"""Local services for one machine: install what is missing, start, stop, report.

`overcloud services up|down|status` drives these. Each service is a `Daemon` whose pid and
log live in the state directory; we only ever stop the pids we recorded.
"""
