"""Plans that worked, remembered by request: the same request gets the same good plan again."""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from baton_common.catalogue import Catalogue
from baton_common.plans import Plan, PlanInvalid, validate_plan


class PlanMemory:
    """Plans that worked, by normalised request text (in memory, least recently used dropped)."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._plans: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # The service feeds it from a worker thread while plans are made on the loop.
        self._lock = threading.Lock()

    @staticmethod
    def key(request: str) -> str:
        """Case, spacing and final punctuation do not make a request different."""
        return " ".join(request.lower().split()).strip(" .!?")

    def remember(self, request: str, plan: Mapping[str, Any] | Plan) -> None:
        """Keep ``plan`` as the answer to ``request``."""
        if isinstance(plan, Plan):
            plan = plan.model_dump(mode="json", exclude_defaults=True)
        key = self.key(request)
        if not key:
            return
        with self._lock:
            self._plans[key] = copy.deepcopy(dict(plan))
            self._plans.move_to_end(key)
            while len(self._plans) > self.max_entries:
                self._plans.popitem(last=False)

    def recall(self, request: str) -> dict[str, Any] | None:
        """A copy of the plan remembered for ``request``, if any."""
        key = self.key(request)
        with self._lock:
            plan = self._plans.get(key)
            if plan is None:
                return None
            self._plans.move_to_end(key)
            return copy.deepcopy(plan)

    def recall_valid(
        self, request: str, catalogue: Catalogue, inputs: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The remembered plan if it still passes validation with this catalogue and inputs."""
        plan = self.recall(request)
        if plan is None:
            return None
        try:
            validate_plan(plan, catalogue, inputs)
        except PlanInvalid:
            return None  # the catalogue or inputs changed since it worked
        return plan

    def __len__(self) -> int:
        return len(self._plans)
