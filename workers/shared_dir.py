"""Every process of a cluster must see one artifact directory; this checks it at start-up instead of at the first
job that cannot find its input.

Each process (API, Celery worker) writes a marker file into ``<artifacts>/.nodes/`` and names it in Redis
(``<p>:artifact_markers``, newest kept). At start-up it first looks for the markers that other processes wrote:
one missing here means this process's ``MEDIAFORGE_ARTIFACTS_DIR`` is not the directory they use (a local disk
where a shared volume was meant), and the process refuses to start with a message saying so. Model hosts check
the same thing per input: a path another node wrote and this node cannot read fails that job naming the node.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import redis

from workers.keyspace import Keyspace

MARKERS_CHECKED = 20
"""The newest markers of other processes checked at start-up (older ones may come from wiped test set-ups)."""
MARKER_TTL_S = 30 * 24 * 3600


class NotShared(RuntimeError):
    """This process's artifact directory is not the one the rest of the cluster writes to."""


class SharedDir(Keyspace):
    def __init__(self, client: redis.Redis, prefix: str, root: Path) -> None:
        super().__init__(client, prefix)
        self.root, self.key = Path(root), self._k("artifact_markers")

    def check_and_join(self, who: str) -> str:
        """Raise ``NotShared`` if a marker another process wrote is missing here; then add this one's."""
        for name in self.redis.zrevrange(self.key, 0, MARKERS_CHECKED - 1):
            if not (self.root / ".nodes" / name).is_file():
                raise NotShared(
                    f"the artifact directory {self.root} is not the one the rest of the cluster uses: {name} (written "
                    f"there by another process) is not visible here. Every API, worker and Ray node must mount one "
                    f"shared directory as MEDIAFORGE_ARTIFACTS_DIR (NFS, a shared volume); if it was wiped on "
                    f"purpose, delete the Redis key {self.key}")
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        (self.root / ".nodes").mkdir(parents=True, exist_ok=True)
        (self.root / ".nodes" / name).write_text(f"{who}\n")
        with self.redis.pipeline() as pipe:
            pipe.zadd(self.key, {name: time.time()})
            pipe.expire(self.key, MARKER_TTL_S)
            pipe.execute()
        return name

