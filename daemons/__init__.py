"""Local daemons we start, supervise and stop by pid: the process model, Debian package
installs, and the LXD, Docker and Alertmanager daemons."""
