"""Preloaded by the fork server only (``training.parallel.process_context``): once the command that started
it has ended, the server exits at once instead of unloading torch (~0.7 s), which would hold the command's
output pipe open that long (``cmd | tee log`` would wait). Its children leave through ``os._exit`` anyway."""

import atexit
import os

atexit.register(os._exit, 0)
