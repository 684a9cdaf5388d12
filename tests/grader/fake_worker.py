"""A stand-in grading worker for the pool's tests: the worker protocol without nbgrader.

``python fake_worker.py FD`` (the socket a real worker gets). It waits
``$FAKE_WORKER_START`` seconds before saying it is ready and appends ``launched`` and ``ready`` lines
(wall time, pid) to ``$FAKE_WORKER_LOG``. A job ``b"crash"`` makes it exit at once; any other job is
answered after ``$FAKE_WORKER_JOB`` seconds with an error outcome naming the job. It never exits on its
own, like a worker whose orderly exit would take seconds.
"""

import os
import sys
import time
from multiprocessing.connection import Connection


def log(event: str) -> None:
    with open(os.environ["FAKE_WORKER_LOG"], "a") as file:
        file.write(f"{event} {time.time()} {os.getpid()}\n")


connection = Connection(int(sys.argv[1]))
log("launched")
connection.recv_bytes()  # the setup, left unread
time.sleep(float(os.environ.get("FAKE_WORKER_START", "0")))
log("ready")
connection.send({"limits": {"memory": False, "processes": False}, "helpers": []})
while True:
    job = connection.recv()
    if job == b"crash":
        os._exit(1)
    time.sleep(float(os.environ.get("FAKE_WORKER_JOB", "0")))
    connection.send({"status": "error", "reason": job.decode()})
