"""The sole importer of criproxy._gen: stable short names for generated modules.

Everything else imports ``from criproxy.protos import cri, tasks_pb, …`` so a change in the generated
layout touches one file.
"""

from __future__ import annotations

from criproxy._gen.cgroups.v1 import metrics_pb2 as cgroups_v1
from criproxy._gen.cgroups.v2 import metrics_pb2 as cgroups_v2
from criproxy._gen.containerd.events import container_pb2 as container_events
from criproxy._gen.containerd.events import image_pb2 as image_events
from criproxy._gen.containerd.events import task_pb2 as task_events
from criproxy._gen.containerd.services.containers.v1 import containers_pb2 as containers_pb
from criproxy._gen.containerd.services.containers.v1 import containers_pb2_grpc as containers_grpc
from criproxy._gen.containerd.services.content.v1 import content_pb2 as content_pb
from criproxy._gen.containerd.services.content.v1 import content_pb2_grpc as content_grpc
from criproxy._gen.containerd.services.diff.v1 import diff_pb2 as diff_pb
from criproxy._gen.containerd.services.diff.v1 import diff_pb2_grpc as diff_grpc
from criproxy._gen.containerd.services.events.v1 import events_pb2 as events_pb
from criproxy._gen.containerd.services.events.v1 import events_pb2_grpc as events_grpc
from criproxy._gen.containerd.services.images.v1 import images_pb2 as images_pb
from criproxy._gen.containerd.services.images.v1 import images_pb2_grpc as images_grpc
from criproxy._gen.containerd.services.introspection.v1 import introspection_pb2 as introspection_pb
from criproxy._gen.containerd.services.introspection.v1 import introspection_pb2_grpc as introspection_grpc
from criproxy._gen.containerd.services.leases.v1 import leases_pb2 as leases_pb
from criproxy._gen.containerd.services.leases.v1 import leases_pb2_grpc as leases_grpc
from criproxy._gen.containerd.services.namespaces.v1 import namespace_pb2 as namespaces_pb
from criproxy._gen.containerd.services.namespaces.v1 import namespace_pb2_grpc as namespaces_grpc
from criproxy._gen.containerd.services.snapshots.v1 import snapshots_pb2 as snapshots_pb
from criproxy._gen.containerd.services.snapshots.v1 import snapshots_pb2_grpc as snapshots_grpc
from criproxy._gen.containerd.services.streaming.v1 import streaming_pb2 as streaming_pb
from criproxy._gen.containerd.services.streaming.v1 import streaming_pb2_grpc as streaming_grpc
from criproxy._gen.containerd.services.tasks.v1 import tasks_pb2 as tasks_pb
from criproxy._gen.containerd.services.tasks.v1 import tasks_pb2_grpc as tasks_grpc
from criproxy._gen.containerd.services.transfer.v1 import transfer_pb2 as transfer_pb
from criproxy._gen.containerd.services.transfer.v1 import transfer_pb2_grpc as transfer_grpc
from criproxy._gen.containerd.services.version.v1 import version_pb2 as version_pb
from criproxy._gen.containerd.services.version.v1 import version_pb2_grpc as version_grpc
from criproxy._gen.containerd.types import descriptor_pb2 as descriptor_pb
from criproxy._gen.containerd.types import event_pb2 as event_pb
from criproxy._gen.containerd.types import metrics_pb2 as metrics_pb
from criproxy._gen.containerd.types import mount_pb2 as mount_pb
from criproxy._gen.containerd.types import platform_pb2 as platform_pb
from criproxy._gen.containerd.types.runc.options import oci_pb2 as runc_options
from criproxy._gen.containerd.types.task import task_pb2 as task_types
from criproxy._gen.containerd.types.transfer import imagestore_pb2 as transfer_imagestore
from criproxy._gen.containerd.types.transfer import progress_pb2 as transfer_progress
from criproxy._gen.containerd.types.transfer import registry_pb2 as transfer_registry
from criproxy._gen.runtime.v1 import api_pb2 as cri
from criproxy._gen.runtime.v1 import api_pb2_grpc as cri_grpc

__all__ = [
    "cgroups_v1", "cgroups_v2", "container_events", "containers_grpc", "containers_pb", "content_grpc",
    "content_pb", "cri", "cri_grpc", "descriptor_pb", "diff_grpc", "diff_pb", "event_pb", "events_grpc",
    "events_pb", "image_events", "images_grpc", "images_pb", "introspection_grpc", "introspection_pb", "leases_grpc",
    "leases_pb", "metrics_pb", "mount_pb", "namespaces_grpc", "namespaces_pb", "platform_pb",
    "runc_options", "snapshots_grpc", "snapshots_pb", "streaming_grpc", "streaming_pb", "task_events",
    "task_types", "tasks_grpc", "tasks_pb", "transfer_grpc", "transfer_imagestore", "transfer_pb",
    "transfer_progress", "transfer_registry", "version_grpc", "version_pb",
]
