"""Root conftest: the real-server fixtures for every test in the workspace."""

import os

os.environ.setdefault("OTEL_SDK_DISABLED", "true")

pytest_plugins = ["baton_common.testing"]
