"""Cluster configurations: offline validation of clusters/*.yaml (``validate``) and the preflight
of ``ltsearch run --address`` (``preflight``). Ray is imported lazily, only where needed."""

from ltsearch.cluster.preflight import (ClusterFacts, check_preflight, gather_facts, network_mount_for,
                                        node_types_from_config, preflight, trial_bundle)
from ltsearch.cluster.validate import file_kind, kuberay_autoscaling_config, validate_file, validate_files

__all__ = ["ClusterFacts", "check_preflight", "file_kind", "gather_facts", "kuberay_autoscaling_config",
           "network_mount_for", "node_types_from_config", "preflight", "trial_bundle", "validate_file",
           "validate_files"]
