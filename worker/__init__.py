"""flexmit: rescue failed subscription charges through FlexFactor.

The Celery app lives in ``worker.celery`` (what ``celery -A worker`` loads); nothing is built
when this package is imported.
"""

__version__ = "0.1.0"
