"""A pod sandbox's parts below the RPCs, as containerd splits ``server/podsandbox`` from its CRI
handlers: the pause container and its task (``pause``), the pod's files (``files``), its network
(``network``), the CRI events it publishes (``events``), start-up recovery and relist (``recover``)
and the one shared stop/remove attempt (``attempt``)."""
