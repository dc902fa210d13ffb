"""kombu's filesystem transport with atomic writes: the embedded broker (``filesystem://``).

kombu's own ``_put`` creates ``<name>.msg`` and then writes into it; a consumer polling the folder
can move and read the file in between, get an empty payload, and the worker dies with
"Unrecoverable error: JSONDecodeError" (celery/kombu#1551). Here a message is written under a
name consumers ignore and renamed into place, so it appears whole or not at all.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    """A filesystem channel whose messages appear atomically."""

    # kombu's own base classes disagree on this signature (message vs payload); ours is theirs.
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # Same name scheme as kombu (time-ordered, then unique); the temporary name starts
        # with "." so kombu's ``_get`` (which matches "<stamp>.<queue>.msg") never picks it up.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        temp = os.path.join(self.data_folder_out, f".{name}.tmp")
        try:
            with open(temp, "wb") as out:
                out.write(str_to_bytes(dumps(payload)))
            os.replace(temp, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    """The transport celery uses for ``filesystem://`` (see ``celeryconfig.broker_transport``)."""

    Channel = Channel
