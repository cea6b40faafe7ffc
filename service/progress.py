"""Live progress of a running scan, shared between the scan and its job."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Progress:
    """Counters a scan updates as it goes; readers may look at any time.

    Scans in worker threads write plain ints and floats, which Python reads
    and writes atomically, so readers see a recent value without locking.
    """

    documents_scanned: int = 0
    # Fraction done, 0.0 to 1.0.
    fraction: float = 0.0
    # Set to ask a scan running in a thread to stop early.
    cancel: threading.Event = field(default_factory=threading.Event)
