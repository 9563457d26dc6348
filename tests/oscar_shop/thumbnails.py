"""Oscar's thumbnail hook without sorl-thumbnail: templates get the original photo."""

from typing import Any

from oscar.core.thumbnails import AbstractThumbnailer


class OriginalImage(AbstractThumbnailer):
    def generate_thumbnail(self, source: Any, **opts: Any) -> Any:
        return source

    def delete_thumbnails(self, source: Any) -> None:
        return None
