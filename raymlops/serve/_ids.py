"""Request ids: the ones a replica issues (marked with a keyed checksum) and what became of each.

A label sent to ``/feedback`` names the prediction it is for by its id. Any
replica can tell an id this endpoint issued from a caller's own without asking
the others, and a caller's id is looked up in the inference log.
"""

import asyncio
import collections
import hashlib
import hmac

from raymlops.config import ProjectConfig
from raymlops.serve._log import logged_recently

_MAX_ANSWERED_IDS = 100_000  # ~10 MB of ids: minutes of traffic at the rates measured here


class RequestIds:
    """The ids this replica answered lately, and the key that marks ids this endpoint issued."""

    def __init__(self, config: ProjectConfig) -> None:
        self.config = config
        self.serving = config.serving
        self._answered: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._id_key = hashlib.sha256(f"{config.name}|{config.inference_log_uri}".encode()).digest()[:16]

    def answered(self, request_id: str) -> None:
        """Remember that this replica answered ``request_id`` (the oldest are forgotten)."""
        self._answered[request_id] = None
        if len(self._answered) > _MAX_ANSWERED_IDS:
            self._answered.popitem(last=False)

    def issue(self, base: str) -> str:
        """An id for a request that brought none, marked so that any replica knows this endpoint issued it."""
        return f"{base}.{self._id_tag(base)}"

    def _id_tag(self, base: str) -> str:
        return hashlib.blake2b(base.encode(), key=self._id_key, digest_size=4).hexdigest()

    async def status(self, request_id: str) -> str:
        """What became of the prediction a label is for: matched, pending or unknown.

        ``matched``: this replica answered it, or it is in the inference log.
        ``pending``: this endpoint issued the id (another replica answered it) and
        its log entry is on its way; the monitor joins the label when it lands.
        ``unknown``: a caller's own id found neither here nor in the log, after
        waiting one log flush for a prediction another replica just made.
        """
        if request_id in self._answered:
            return "matched"
        base, _, tag = request_id.rpartition(".")
        if base and hmac.compare_digest(tag, self._id_tag(base)):
            return "pending"
        if not self.serving.inference_log:
            return "pending"  # nothing to look in: kept, as before
        horizon_s = self.config.monitoring.dedup_horizon_s
        for wait_s in (0.0, self.serving.log_flush_interval_s + 0.5):
            await asyncio.sleep(wait_s)
            if await asyncio.to_thread(logged_recently, self.config.inference_log_uri, request_id, horizon_s):
                return "matched"
        return "unknown"
