"""Memory measurement for tests: the peak resident memory of this process (`PeakRSS`)."""

from __future__ import annotations

import threading
import time


class PeakRSS:
    """The peak resident memory of this process above its level at start, sampled every 5 ms
    in a thread (ru_maxrss would keep an earlier, unrelated peak)."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.baseline = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / (1 << 20)
