"""What carries the project's labels, and its removal: a stack's teardown, and ``msbench cleanup``
for whatever a crashed run left (containers, then networks, then volumes). Nothing without the
``org.msbench.managed`` label is touched."""
from __future__ import annotations

import time
from typing import Any

from msbench.providers.docker.engine import docker_client
from msbench.providers.docker.specs import MANAGED_LABEL, RUN_LABEL, STACK_LABEL


def cleanup(client=None, run: str | None = None, stack: str | None = None) -> dict[str, Any]:
    """Remove containers, then networks and volumes, carrying our labels (optionally one run's or
    one stack's). Nothing without the ``org.msbench.managed`` label is touched."""
    own = client is None
    client = client or docker_client()
    filters = [f"{MANAGED_LABEL}=true"]
    if run:
        filters.append(f"{RUN_LABEL}={run}")
    if stack:
        filters.append(f"{STACK_LABEL}={stack}")
    removed = {"containers": [], "networks": [], "volumes": [], "errors": []}
    for container in client.containers.list(all=True, filters={"label": filters}):
        try:
            container.remove(force=True, v=True)
            removed["containers"].append(container.name)
        except Exception as err:  # noqa: BLE001 (keep removing the rest)
            if "No such container" not in str(err) and "already in progress" not in str(err):
                removed["errors"].append(f"container {container.name}: {err}")
    for network in client.networks.list(filters={"label": filters}):
        try:
            network.remove()
            removed["networks"].append(network.name)
        except Exception as err:  # noqa: BLE001
            removed["errors"].append(f"network {network.name}: {err}")
    for _ in range(20):   # a just-removed container can hold its volume for a moment
        volumes = client.volumes.list(filters={"label": filters})
        pending = []
        for volume in volumes:
            try:
                volume.remove(force=True)
                removed["volumes"].append(volume.name)
            except Exception as err:  # noqa: BLE001
                pending.append(f"volume {volume.name}: {err}")
        if not pending:
            break
        time.sleep(0.5)
    else:
        removed["errors"] += pending
    if own:
        client.close()
    return removed


def leftovers(client=None, run: str | None = None) -> dict[str, list[str]]:
    """What still carries our labels (tests assert this is empty after teardown)."""
    client = client or docker_client()
    filters = {"label": [f"{MANAGED_LABEL}=true"] + ([f"{RUN_LABEL}={run}"] if run else [])}
    return {"containers": [c.name for c in client.containers.list(all=True, filters=filters)],
            "networks": [n.name for n in client.networks.list(filters=filters)],
            "volumes": [v.name for v in client.volumes.list(filters=filters)]}
