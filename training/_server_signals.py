"""Preloaded first by the fork server (``training.parallel.process_context``): Ctrl-C in a terminal reaches the
whole process group, and a server still importing torch would die of it with a traceback. The command stops its
worker processes itself (SIGTERM), so the server and the processes it forks ignore SIGINT."""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
