"""A plugin that says when a process imports it: a line (pid, command) in $BATON_TEST_IMPORT_LOG."""

import json
import os
import sys

if path := os.environ.get("BATON_TEST_IMPORT_LOG"):
    with open(path, "a") as out:
        out.write(json.dumps({"pid": os.getpid(), "argv": sys.argv}) + "\n")
