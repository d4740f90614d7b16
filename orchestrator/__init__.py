"""The orchestrator: turns OverCloud requests into workflows and drives the UnderCloud.

So far it holds what provisioning stands on: the image recipes and cache (`images`), the
3-tier stack's Dockerfiles and Compose templates (`stack/`), and the drivers that talk to
LXD and Docker (`drivers/`: the only modules that import pylxd and the docker package).
"""
