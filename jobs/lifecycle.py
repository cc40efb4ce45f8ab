"""Worker process state shared with the jobs it runs."""
from __future__ import annotations

import threading

# Set when the worker received SIGTERM (warm shutdown): a running execution finishes the node
# in progress, checkpoints, and is handed over to another worker.
shutdown_requested = threading.Event()
