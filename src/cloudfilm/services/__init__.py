"""Use cases, by capability: archive, imaging, exchange, access, audit, notify, nodules and
demo (one package each, its ``__init__`` names its use cases), opened together by
``context.Archive``."""
