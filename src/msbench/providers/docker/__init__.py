"""The Docker provider: per trial, Milvus standalone + etcd + one object store as containers.

Everything goes through the Python ``docker`` SDK (no CLI).  A stack is a context manager like
the native one: entering creates labelled named volumes (and a network, unless host
networking), starts the store and etcd, waits until their healthchecks pass, creates the bucket
(or runs the backend's bootstrap, e.g. Garage's layout/key/bucket), then starts Milvus; leaving
saves every container's log into the trial's log folder and removes whatever carries this
stack's label: containers, volumes, network, also after a failure.  ``cleanup()`` (``msbench
cleanup``) removes what a crashed run left behind, by the project's labels only.

The containers are described by data: ``src/msbench/images/stack.yaml`` (Milvus, etcd, the
helper) and the ``docker:`` mapping of each backend YAML.  ``plan_stack()`` turns definitions
and parameters into the exact keyword arguments of ``containers.run`` (a pure function, tested
without Docker).  Local images (``msbench images build-local``) run through the same
definitions with the ``local:`` overrides.

Healthchecks: the configured Docker healthcheck runs every 30 s (so probes do not perturb the
measured phases); while a container starts we run the same probe with ``exec`` twice a second,
so readiness is seen at once.  A container that exits or turns unhealthy fails the wait at once,
with its last log lines in the error.

| module | job |
|---|---|
| ``specs.py`` | definitions + parameters -> container specs and labels (pure, no engine) |
| ``engine.py`` | the engine: client, images, a container's health, exit and process, the page-cache helper |
| ``stack.py`` | ``DockerStack``: provision, cold restart, what the phases read, teardown |
| ``cleanup.py`` | removal of whatever carries our labels (teardown, ``msbench cleanup``) |
| ``local_images.py`` | ``msbench images build-local``: the images built here from PyPI and Debian |

The names other modules and the tests use are re-exported here.
"""
from __future__ import annotations

from msbench.providers.docker.cleanup import cleanup, leftovers
from msbench.providers.docker.engine import (HELPER_VM_DIR, ContainerNotReady, ContainerProcess, DockerUnavailable,
                                             docker_client, docker_unavailable_reason, drop_page_cache_via_container,
                                             wait_healthy)
from msbench.providers.docker.specs import (BACKEND_LABEL, MANAGED_LABEL, NS, ROLE_LABEL, RUN_LABEL, STACK_LABEL,
                                            TRIAL_LABEL, StackIdentity, StackPlan, plan_stack, resolve_definitions)
from msbench.providers.docker.stack import PROVIDER, DockerStack, DockerStore, docker_stack

__all__ = ["BACKEND_LABEL", "HELPER_VM_DIR", "MANAGED_LABEL", "NS", "PROVIDER", "ROLE_LABEL", "RUN_LABEL", "STACK_LABEL",
           "TRIAL_LABEL", "ContainerNotReady", "ContainerProcess", "DockerStack", "DockerStore", "DockerUnavailable",
           "StackIdentity", "StackPlan", "cleanup", "docker_client", "docker_stack", "docker_unavailable_reason",
           "drop_page_cache_via_container", "leftovers", "plan_stack", "resolve_definitions", "wait_healthy"]
