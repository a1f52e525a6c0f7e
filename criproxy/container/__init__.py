"""A container's parts below the RPCs: the OCI spec composed from the CRI config, the image and the
pod (``spec``), the task's start, exit handling, stop and removal (``task``), and start-up recovery,
the task events and the relist that correct drift, and stopping/removing a pod's containers
(``recover``)."""
