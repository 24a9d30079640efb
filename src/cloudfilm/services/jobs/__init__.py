"""Background work as jobs: the web request enqueues, a worker runs (issue 13).

- ``queue``: `JobQueue` (enqueue, pending, the jobs listed) and `open_queue`, which picks
  the engine from ``CLOUDFILM_QUEUE_URL``;
- ``ledger``: every job's state in the index (waiting, running under a lease, failed),
  the same on every engine;
- ``brokers``: RabbitMQ and Redis through Dramatiq, which carry jobs to idle workers;
- ``handlers``: the table of jobs (name -> function of the archive and a JSON payload)
  and of the periodic ones;
- ``worker``: `start_worker`, the threads that run jobs (``cloudfilm worker`` and the
  worker embedded in ``cloudfilm serve``).
"""
