"""A multi-worker pre-training run as Kubernetes objects: an Indexed Job and a headless Service.

``trimbert launch --emit kubernetes`` prints them; nothing here talks to a cluster. Facts relied on
(Kubernetes documentation: "Job with Pod-to-Pod Communication", "Handling retriable and
non-retriable pod failures with Pod failure policy"):

- A Job with ``completionMode: Indexed`` gives each pod an index 0..completions-1 in the
  ``JOB_COMPLETION_INDEX`` environment variable and the hostname ``JOBNAME-INDEX``; a failed pod is
  replaced by a new pod with the same index. ``completions = parallelism = N``: all workers at once,
  and the Job succeeds when every index has exited 0.
- With the pod template's ``subdomain`` set to a headless Service (``clusterIP: None``) in the same
  namespace that selects the pods, each pod resolves as ``JOBNAME-INDEX.SERVICE``: stable addresses
  for ``TF_CONFIG``. ``publishNotReadyAddresses`` publishes them before the pods are ready, since
  workers look each other up while starting.
- ``podFailurePolicy`` (stable since Kubernetes 1.31, needs ``restartPolicy: Never``) decides per
  exit code: 2 (a configuration or data error) fails the Job at once; 143 (preempted after a
  checkpoint) and 75 (a peer was lost, restart me) are ignored, so the index is replaced without
  using up ``backoffLimit``; a pod disruption (``DisruptionTarget``: preemption, eviction) too;
  anything else (1, a crash; 137, killed) counts against ``backoffLimit``.

A worker that fails is replaced alone; the others stop with 75 when they notice the lost peer and
are replaced in turn, and the new group resumes from the last checkpoint. The wrapper run in each
container builds ``TF_CONFIG`` from its index with POSIX sh (no Python needed before trimbert) and
``exec``s ``trimbert`` with the pretrain arguments, so trimbert receives the pod's SIGTERM itself.
"""

from __future__ import annotations

import re

import yaml

from configs.errors import TrimbertError

CONTAINER = "pretrain"
PORT_NAME = "tf-worker"
SERVICE_SUFFIX = "-workers"
FAIL_JOB_EXIT_CODES = (2,)
IGNORED_EXIT_CODES = (75, 143)  # restarted without counting against backoffLimit; sorted, as the API requires
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS_LABEL_MAX = 63

# $0 is the script's name; "$@" the trimbert arguments (the container's args).
WORKER_SCRIPT = """\
set -eu
index="${{JOB_COMPLETION_INDEX:?is not set: run this container in an Indexed Job}}"
workers=""
i=0
while [ "$i" -lt {workers} ]; do
  workers="$workers${{workers:+, }}\\"{name}-$i.{service}:{port}\\""
  i=$((i + 1))
done
task="{{\\"type\\": \\"worker\\", \\"index\\": $index}}"
TF_CONFIG="{{\\"cluster\\": {{\\"worker\\": [$workers]}}, \\"task\\": $task}}"
export TF_CONFIG
exec trimbert "$@"
"""


def worker_script(name: str, workers: int, port: int) -> str:
    """The container's shell script: ``TF_CONFIG`` from ``JOB_COMPLETION_INDEX``, then ``exec trimbert "$@"``."""
    return WORKER_SCRIPT.format(name=name, service=service_name(name), workers=workers, port=port)


def service_name(name: str) -> str:
    return name + SERVICE_SUFFIX


def manifest(name: str, image: str, workers: int, port: int, max_restarts: int, grace_seconds: float,
             arguments: list[str], namespace: str | None = None) -> list[dict]:
    """The Service and the Job (in that order: the names resolve before the pods start).

    Args:
        name: the Job's name; its pods' hostnames are ``name-INDEX``, its Service ``name-workers``.
        image: a container image with the ``trimbert`` command on its PATH.
        workers: completions and parallelism.
        port: the port every worker listens on (each pod has its own address).
        max_restarts: the Job's ``backoffLimit``.
        grace_seconds: the pods' ``terminationGracePeriodSeconds`` (time to checkpoint after SIGTERM).
        arguments: trimbert's arguments (``pretrain ... --strategy multi_worker``).
        namespace: the objects' namespace (None: kubectl's current one).
    """
    _check_name(name, workers)
    if not 0 < port < 65536:
        raise TrimbertError(f"--port-base {port} is not a port number")
    labels = {"app.kubernetes.io/name": "trimbert", "app.kubernetes.io/instance": name}
    metadata = {"labels": dict(labels), **({"namespace": namespace} if namespace else {})}
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": service_name(name), **metadata},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": dict(labels),
                 "ports": [{"name": PORT_NAME, "port": port, "targetPort": port}]},
    }
    container = {
        "name": CONTAINER, "image": image,
        "command": ["/bin/sh", "-c", worker_script(name, workers, port), "tf-config"],
        "args": list(arguments),
        "ports": [{"name": PORT_NAME, "containerPort": port}],
    }
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, **metadata},
        "spec": {
            "completionMode": "Indexed", "completions": workers, "parallelism": workers,
            "backoffLimit": max_restarts,
            "podFailurePolicy": {"rules": [
                {"action": "FailJob",
                 "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": list(FAIL_JOB_EXIT_CODES)}},
                {"action": "Ignore",
                 "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": list(IGNORED_EXIT_CODES)}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"subdomain": service_name(name), "restartPolicy": "Never",
                         "terminationGracePeriodSeconds": int(round(grace_seconds)), "containers": [container]},
            },
        },
    }
    return [service, job]


def to_yaml(documents: list[dict]) -> str:
    """The documents as one YAML stream; the worker script as a literal block, readable as written."""
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def _check_name(name: str, workers: int) -> None:
    longest = max(len(service_name(name)), len(f"{name}-{workers - 1}"))
    if not _DNS_LABEL.fullmatch(name) or longest > _DNS_LABEL_MAX:
        raise TrimbertError(f"--name {name!r}: the Job's pods ({name}-0 ...) and Service ({service_name(name)}) "
                            f"need DNS labels: lower-case letters, digits and '-', starting with a letter, at most "
                            f"{_DNS_LABEL_MAX} characters")


class _Dumper(yaml.SafeDumper):
    pass


def _string(dumper: yaml.SafeDumper, text: str):
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _string)
