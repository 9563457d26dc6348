"""The writers of catalog imports: ``CatalogWriter`` writes the catalog's own fields (``LOOKALIKE``).

The models and the roles of their fields come from ``lookalike.catalog``; the scraper never imports
``shop``. ``CatalogWriter`` writes roles that are columns of the product and image models: optional ones
the catalog lacks (brand, category, status, ...) are skipped; the store, external id, title, and the
image's product and file fields are required. A catalog whose price or stock live elsewhere (django-oscar's
stock records) names a subclass in ``SCRAPER["CATALOG_WRITER"]`` (``lookalike.oscar.OscarWriter``).

``CatalogWriter`` does the row-level writes: upsert one product, store image bytes (once per sha256),
copy a stored image to another product, record an image failure. Saves go through ``Model.save()`` so
that receivers (embedding, landing-page caches) see them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.db import models, router, transaction
from django.db.models.signals import post_save, pre_save
from django.utils import timezone
from django.utils.module_loading import import_string

from lookalike import versioned_cache
from lookalike.catalog import image_model, product_model, store_model, store_value
from lookalike.conf import lookalike_setting
from scraper.conf import app_setting
from scraper.parsers import ScrapedProduct

Outcome = Literal["created", "updated", "unchanged"]
STORED, FAILED = "stored", "failed"

_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/avif": "avif",
    "image/heic": "heic",
    "image/tiff": "tif",
    "image/bmp": "bmp",
}


__all__ = ["CatalogWriter", "ImageWork", "catalog_writer", "image_model", "product_model", "store_model"]

# Product roles a writer never writes: the storefront's link (the source page is ``source_url``) and the
# parent of a variant.
_NOT_WRITTEN = ("url", "parent")


def catalog_writer(*, store: models.Model) -> CatalogWriter:
    """The writer ``SCRAPER["CATALOG_WRITER"]`` names, for one store."""
    return import_string(app_setting("CATALOG_WRITER"))(store=store)


def _mapped_fields(model: type[models.Model], mapping: dict[str, Any]) -> dict[str, models.Field]:
    """Role → field, for the roles that are columns of ``model`` (paths and expressions are read-only)."""
    fields: dict[str, models.Field] = {}
    for role, name in mapping.items():
        if not isinstance(name, str) or "__" in name or role in _NOT_WRITTEN:
            continue
        try:
            fields[role] = model._meta.get_field(name)  # type: ignore[assignment]
        except FieldDoesNotExist:
            continue
    return fields


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _as_json(value: Any) -> Any:
    """The value as it reads back from a JSON column, so comparing with the stored one is fair."""
    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True)
class ImageWork:
    """An image URL to download for a product (``image_id``: the row of an earlier failed attempt)."""

    product_id: int
    url: str
    position: int
    external_id: str = ""
    image_id: int | None = None

    def as_list(self) -> list[Any]:
        return [self.product_id, self.url, self.position, self.external_id, self.image_id]

    @classmethod
    def from_list(cls, values: list[Any]) -> ImageWork:
        return cls(*values)


def _write_content_addressed(storage: FileSystemStorage, name: str, data: bytes) -> str:
    """``storage.save`` for a name made from the bytes' sha256, on local disk.

    ``Storage.save`` finds a free name, locks and writes in chunks: a third of a millisecond a photo, most
    of an import's file time. A content-addressed name needs none of it (a file already there holds these
    very bytes), so the bytes go to a temporary file that is renamed into place: readers never see half a
    file, and two threads writing the same photo leave the same bytes.
    """
    path = storage.path(name)  # refuses a name outside the storage's folder
    if os.path.exists(path):
        return name
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, exist_ok=True)
        if storage.directory_permissions_mode is not None:  # as Storage.save sets it on what it creates
            os.chmod(directory, storage.directory_permissions_mode)
    # One writer per thread and name at a time, so the thread's id makes the temporary name unique.
    temporary = os.path.join(directory, f".partial-{threading.get_ident()}-{os.path.basename(path)}")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
        os.chmod(temporary, storage.file_permissions_mode or 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return name


class CatalogWriter:
    """Writes records of one import into one store."""

    # Product roles this writer cannot do without (system check scraper.E002 names them).
    required_product_roles: tuple[str, ...] = ("store", "external_id", "title")

    def __init__(self, *, store: models.Model) -> None:
        self.store = store
        self.product_model = product_model()
        self.image_model = image_model()
        self.p = _mapped_fields(self.product_model, lookalike_setting("PRODUCT_FIELDS"))
        self.i = _mapped_fields(self.image_model, lookalike_setting("IMAGE_FIELDS"))
        for role in self.required_product_roles:
            if role not in self.p:
                label = self.product_model._meta.label
                raise ImproperlyConfigured(f"LOOKALIKE['PRODUCT_FIELDS'][{role!r}] is not a field of {label}")
        for role in ("product", "image"):
            if role not in self.i:
                raise ImproperlyConfigured(
                    f"LOOKALIKE['IMAGE_FIELDS'][{role!r}] names no field of {self.image_model._meta.label}"
                )
        self.default_currency = str(store_value(store, "currency", "") or "")
        self.max_images = int(app_setting("MAX_IMAGES_PER_PRODUCT"))
        self._auto_now = [
            field.name
            for field in self.product_model._meta.concrete_fields
            if getattr(field, "auto_now", False)
        ]
        self._categories: dict[tuple[str, ...], Any] = {}
        # Saves go one by one, each in a savepoint so one bad row cannot abort the caller's transaction,
        # or, inside ``batched_writes()``, are collected and written in bulk.
        self._pending: dict[int, tuple[models.Model, frozenset[str] | None]] | None = None
        self._probes = threading.local()  # _file_name's blank rows (download threads call it)

    @contextlib.contextmanager
    def batched_writes(self) -> Iterator[None]:
        """Collect saves and write them in bulk when the block ends (or at ``write_pending()``): one
        INSERT per model and one UPDATE per set of changed fields instead of a statement per row.

        ``pre_save`` and ``post_save`` are sent for every row as ``Model.save()`` sends them, so
        receivers (embedding, landing-page caches) see bulk writes too. Use it inside a transaction:
        if one row fails, the whole block fails; write the rows again one by one outside it. The cache
        counters those receivers bump after the commit are bumped once for the block, not once per row.
        """
        self._pending = {}
        try:
            with versioned_cache.coalesced_bumps():
                yield
                self.write_pending()
        finally:
            self._pending = None

    def write_pending(self) -> None:
        if not self._pending:
            return
        rows, self._pending = list(self._pending.values()), {}
        creates: dict[type[models.Model], list[models.Model]] = defaultdict(list)
        updates: dict[tuple[type[models.Model], frozenset[str]], list[models.Model]] = defaultdict(list)
        for row, fields in rows:
            if row._state.adding:
                creates[type(row)].append(row)
            else:
                updates[type(row), fields or frozenset()].append(row)
        for model, group in creates.items():
            using = router.db_for_write(model)
            for row in group:
                pre_save.send(sender=model, instance=row, raw=False, using=using, update_fields=None)
            model._default_manager.bulk_create(group)
            for row in group:
                post_save.send(
                    sender=model, instance=row, created=True, update_fields=None, raw=False, using=using
                )
        for (model, fields), group in updates.items():
            using = router.db_for_write(model)
            stamped = [
                field.attname for field in model._meta.concrete_fields if getattr(field, "auto_now", False)
            ]
            now = timezone.now()
            for row in group:
                for name in stamped:
                    setattr(row, name, now)
                pre_save.send(sender=model, instance=row, raw=False, using=using, update_fields=fields)
            model._default_manager.bulk_update(group, sorted(fields | set(stamped)))
            for row in group:
                post_save.send(
                    sender=model, instance=row, created=False, update_fields=fields, raw=False, using=using
                )

    def _save(self, row: models.Model, update_fields: list[str] | None = None) -> None:
        if self._pending is not None:
            key = id(row)
            if row._state.adding or key not in self._pending:
                fields = None if update_fields is None else frozenset(update_fields)
            else:  # saved twice in one batch: both sets of changes are written
                earlier = self._pending[key][1]
                fields = None if earlier is None or update_fields is None else earlier | set(update_fields)
            if fields is None and not row._state.adding:
                fields = frozenset(f.attname for f in type(row)._meta.concrete_fields if not f.primary_key)
            self._pending[key] = (row, fields)
            return
        with transaction.atomic():
            row.save(update_fields=update_fields)

    # --- reads, one query per batch

    def existing_products(self, external_ids: list[str]) -> dict[str, models.Model]:
        if not external_ids:
            return {}
        store_name, id_name = self.p["store"].name, self.p["external_id"].name
        rows = self.product_model._default_manager.filter(
            **{store_name: self.store, f"{id_name}__in": external_ids}
        )
        return {getattr(row, id_name): row for row in rows}

    def images_of(self, product_ids: list[int]) -> dict[int, list[models.Model]]:
        found: dict[int, list[models.Model]] = {pk: [] for pk in product_ids}
        if not product_ids:
            return found
        product_attname = self.i["product"].attname
        rows = self.image_model._default_manager.filter(**{f"{self.i['product'].name}__in": product_ids})
        for row in rows.order_by("pk"):
            found[getattr(row, product_attname)].append(row)
        return found

    def stored_images_by(
        self, role: Literal["source_url", "sha256"], values: list[str]
    ) -> dict[str, models.Model]:
        """Some stored image per value (any product): its file can be reused instead of downloading."""
        if role not in self.i or not values:
            return {}
        name = self.i[role].name
        rows = self.image_model._default_manager.filter(**{f"{name}__in": values}).exclude(
            **{self.i["image"].name: ""}
        )
        if "status" in self.i:
            rows = rows.filter(**{self.i["status"].name: STORED})
        return {getattr(row, name): row for row in rows.order_by("pk")}

    # --- products

    def product_values(self, record: ScrapedProduct, *, is_new: bool) -> dict[str, Any]:
        """Field name → value for what the record says; ``ValueError`` when it cannot be stored."""
        values: dict[str, Any] = {}
        self._set_text(values, "title", record.title, truncate=True)
        self._set_text(values, "description", record.description, truncate=True)
        self._set_text(values, "brand", record.brand, truncate=True)
        if "source_url" in self.p:
            limit = self.p["source_url"].max_length
            values[self.p["source_url"].attname] = record.url if not limit or len(record.url) <= limit else ""
        if "price" in self.p and record.price is not None:
            values[self.p["price"].attname] = self._price(record.price)
        if "currency" in self.p:
            currency = (record.currency or self.default_currency).upper()
            limit = self.p["currency"].max_length
            if currency and (not limit or len(currency) <= limit):
                values[self.p["currency"].attname] = currency
        if "in_stock" in self.p and (record.in_stock is not None or is_new):
            values[self.p["in_stock"].attname] = True if record.in_stock is None else record.in_stock
        if "category" in self.p and record.category_path:
            values.update(self._category_value(record.category_path))
        if "attributes" in self.p:
            values[self.p["attributes"].attname] = _as_json(record.attributes)
        return values

    def upsert(self, record: ScrapedProduct, existing: models.Model | None) -> tuple[Outcome, models.Model]:
        """Create or update the record's product. Raises ``ValueError`` (nothing written) or, for a row
        the database refuses, ``DatabaseError`` (rolled back to a savepoint, outside ``batched_writes``)."""
        if self._pending is not None:
            return self._upsert(record, existing)
        with transaction.atomic():  # the category too: one bad row must not abort the caller's transaction
            return self._upsert(record, existing)

    def forget_uncommitted(self) -> None:
        """After a rolled-back batch: categories created in it are gone."""
        self._categories.clear()

    def _upsert(self, record: ScrapedProduct, existing: models.Model | None) -> tuple[Outcome, models.Model]:
        id_field = self.p["external_id"]
        if id_field.max_length and len(record.external_id) > id_field.max_length:
            raise ValueError(f"external id is longer than {id_field.max_length} characters")
        values = self.product_values(record, is_new=existing is None)
        if existing is None:
            product = self.product_model(
                **{self.p["store"].name: self.store, id_field.attname: record.external_id}, **values
            )
            self._save(product)
            return "created", product
        changed = [name for name, value in values.items() if getattr(existing, name) != value]
        if not changed:
            return "unchanged", existing
        for name in changed:
            setattr(existing, name, values[name])
        self._save(existing, update_fields=[*changed, *self._auto_now])
        return "updated", existing

    def _set_text(self, values: dict[str, Any], role: str, text: str, *, truncate: bool) -> None:
        field = self.p.get(role)
        if field is None:
            return
        limit = field.max_length
        values[field.attname] = text[:limit] if truncate and limit else text

    def _price(self, price: Decimal) -> Decimal:
        field = self.p["price"]
        places = getattr(field, "decimal_places", None)
        digits = getattr(field, "max_digits", None)
        if places is None:
            return price
        try:
            # Stored rounded by the database anyway; rounding here makes the next run compare equal.
            amount = price.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
        except InvalidOperation:
            raise ValueError(f"price {price} is too large") from None
        if digits is not None and len(amount.as_tuple().digits) > digits:
            raise ValueError(f"price {price} is too large for the catalog ({digits} digits)")
        return amount

    def _category_value(self, path: list[str]) -> dict[str, Any]:
        field = self.p["category"]
        if not field.is_relation:
            text = " > ".join(path)
            return {field.attname: text[: field.max_length] if field.max_length else text}
        key = tuple(path)
        if key not in self._categories:
            from_path = getattr(field.related_model, "from_path", None)
            category = from_path(list(path)) if callable(from_path) else None
            self._categories[key] = category.pk if category is not None else None
        return {field.attname: self._categories[key]} if self._categories[key] is not None else {}

    # --- images

    def image_position(self, row: models.Model) -> int:
        return int(getattr(row, self.i["position"].attname)) if "position" in self.i else 0

    def set_image_position(self, row: models.Model, position: int) -> None:
        if "position" in self.i and self.image_position(row) != position:
            self.image_model._default_manager.filter(pk=row.pk).update(**{self.i["position"].name: position})

    def image_is_stored(self, row: models.Model) -> bool:
        # A failed download leaves no file. A row with its file is downloaded even when the embedding
        # pipeline later marked the photo failed (unreadable by the model): fetching it again changes nothing.
        return bool(getattr(row, self.i["image"].attname))

    def image_value(self, row: models.Model, role: str) -> Any:
        return getattr(row, self.i[role].attname) if role in self.i else None

    def delete_images(self, rows: list[models.Model]) -> None:
        """Drop image rows the source no longer lists; files stay (another row may share them)."""
        if rows:
            self.image_model._default_manager.filter(pk__in=[row.pk for row in rows]).delete()

    def write_file_if_content_addressed(self, data: bytes, *, sha256: str, content_type: str) -> str | None:
        """Write the bytes under the catalog's name for them when that name is made from the sha256 (the
        bundled catalog's is): then an existing file of that name holds these very bytes and is kept.
        Returns the stored name, or ``None`` when names are not content-addressed (the caller writes
        the file with ``store_image`` after looking for a stored image with the same sha256).

        Touches only the storage, never the database: download threads call it.
        """
        file_name = self._file_name(sha256, content_type)
        if sha256 not in file_name:
            return None
        image_field: Any = self.i["image"]  # a FileField: it has a storage
        storage = image_field.storage
        if isinstance(storage, FileSystemStorage):
            return _write_content_addressed(storage, file_name, data)
        if storage.exists(file_name):
            return file_name
        return storage.save(file_name, ContentFile(data), max_length=image_field.max_length)

    def _file_name(self, sha256: str, content_type: str) -> str:
        # upload_to may read the row's sha256: a blank row per thread carries it (building a model instance
        # per photo was a third of this).
        probe = getattr(self._probes, "row", None)
        if probe is None:
            probe = self._probes.row = self.image_model()
        if "sha256" in self.i:
            setattr(probe, self.i["sha256"].attname, sha256)
        extension = _EXTENSIONS.get(content_type, "jpg")
        image_field: Any = self.i["image"]
        return str(image_field.generate_filename(probe, f"{sha256[:16]}.{extension}"))

    def store_image(
        self,
        *,
        product_id: int,
        data: bytes,
        content_type: str,
        width: int,
        height: int,
        position: int,
        source_url: str = "",
        sha256: str = "",
        reuse: models.Model | None = None,
        file_name: str | None = None,
        replace: models.Model | None = None,
    ) -> tuple[models.Model, bool]:
        """Store ``data`` as an image of the product; returns ``(row, file_was_written)``.

        ``reuse``: a stored image with the same sha256 whose file is taken instead of writing a new one.
        ``file_name``: the bytes are stored already under this name (``write_file_if_content_addressed``).
        ``replace``: an earlier failed row of this image, updated instead of adding a row.
        """
        sha256 = sha256 or sha256_hex(data)
        image_field: Any = self.i["image"]
        written = False
        if reuse is not None:
            file_name = getattr(reuse, image_field.attname).name
        elif file_name is None:
            file_name = self._file_name(sha256, content_type)
            storage = image_field.storage
            # A content-addressed name that already exists holds these very bytes: keep it.
            if not (sha256 in file_name and storage.exists(file_name)):
                file_name = storage.save(file_name, ContentFile(data), max_length=image_field.max_length)
                written = True
        values = {
            image_field.attname: file_name,
            **self._image_values(source_url=source_url, position=position, sha256=sha256),
            **self._optional_image_values(
                {"width": width, "height": height, "status": STORED, "failure_reason": ""}
            ),
        }
        row = self._save_image_row(product_id, values, replace)
        return row, written

    def copy_image(
        self,
        *,
        product_id: int,
        source: models.Model,
        position: int,
        source_url: str,
        replace: models.Model | None,
    ) -> models.Model:
        """A new image row of the product that shares ``source``'s stored file (no download)."""
        values = {
            self.i["image"].attname: getattr(source, self.i["image"].attname).name,
            **self._image_values(
                source_url=source_url, position=position, sha256=str(self.image_value(source, "sha256") or "")
            ),
            **self._optional_image_values(
                {
                    "width": self.image_value(source, "width"),
                    "height": self.image_value(source, "height"),
                    "status": STORED,
                    "failure_reason": "",
                }
            ),
        }
        return self._save_image_row(product_id, values, replace)

    def record_image_failure(
        self, *, product_id: int, source_url: str, position: int, reason: str, replace: models.Model | None
    ) -> models.Model | None:
        """Keep the failure on the image row (status failed, the reason); ``None`` when the catalog's
        image model has no status field to hold it."""
        if "status" not in self.i:
            return None
        limit = self.i["failure_reason"].max_length if "failure_reason" in self.i else None
        values = {
            **self._image_values(source_url=source_url, position=position, sha256=None),
            **self._optional_image_values(
                {"status": FAILED, "failure_reason": reason[:limit] if limit else reason}
            ),
        }
        return self._save_image_row(product_id, values, replace)

    def _image_values(self, *, source_url: str, position: int, sha256: str | None) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "source_url" in self.i:
            limit = self.i["source_url"].max_length
            values[self.i["source_url"].attname] = source_url if not limit or len(source_url) <= limit else ""
        if "position" in self.i:
            values[self.i["position"].attname] = position
        if "sha256" in self.i and sha256 is not None:
            values[self.i["sha256"].attname] = sha256
        return values

    def _optional_image_values(self, values: dict[str, Any]) -> dict[str, Any]:
        return {self.i[role].attname: value for role, value in values.items() if role in self.i}

    def _save_image_row(
        self, product_id: int, values: dict[str, Any], replace: models.Model | None
    ) -> models.Model:
        if replace is None:
            row = self.image_model(**{self.i["product"].attname: product_id}, **values)
        else:
            row = replace
            for name, value in values.items():
                setattr(row, name, value)
        self._save(row)
        return row
